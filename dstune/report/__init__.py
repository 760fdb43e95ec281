"""Reports from study directories alone: `dstune report` (one study) and `dstune compare` (several).

Data first (`_records`, built by `_data`; `_compare`: frozen records), then renderers (`_html`, `_markdown`,
`_plots`, `_terminal`), so every format shows the same numbers. matplotlib is
imported only when a figure is drawn.
"""

from ._accuracy import spearman
from ._charts import pareto_front
from ._compare import CompareData, CompareEntry, build_compare, cost_per_million_tokens
from ._data import build_report
from ._importance import Importance, param_importance
from ._load import StudyDir, load_study_dir
from ._records import ReportData
from ._terminal import print_compare_summary, print_report_summary
from ._write import compare_studies, report_study, write_compare, write_report

__all__ = [
    "CompareData",
    "CompareEntry",
    "Importance",
    "ReportData",
    "StudyDir",
    "build_compare",
    "build_report",
    "compare_studies",
    "cost_per_million_tokens",
    "load_study_dir",
    "param_importance",
    "pareto_front",
    "print_compare_summary",
    "print_report_summary",
    "report_study",
    "spearman",
    "write_compare",
    "write_report",
]
