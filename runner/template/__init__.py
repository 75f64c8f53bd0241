"""Templates: Jinja in a sandbox, with a fast path for plain paths and native types.

``render`` compiles and renders (each distinct template at most once per process),
``syntax`` and ``analysis`` read templates without running them (validation uses them),
``masking`` keeps secrets out of everything the runner writes. Pure: no I/O.
"""

from runner.template.budget import MAX_RENDER_SECONDS, MAX_RENDER_SIZE, limit_renders, set_time_limit
from runner.template.render import (
    MAX_POWER_DIGITS,
    MAX_REPEAT,
    Compiled,
    Masker,
    TemplateError,
    compile_value,
    find_problems,
    is_templated,
    jinja_compile_count,
    referenced_result_fields,
    referenced_roots,
    referenced_steps,
    render_condition,
)

__all__ = [
    "MAX_POWER_DIGITS",
    "MAX_RENDER_SECONDS",
    "MAX_RENDER_SIZE",
    "MAX_REPEAT",
    "Compiled",
    "Masker",
    "TemplateError",
    "compile_value",
    "find_problems",
    "is_templated",
    "jinja_compile_count",
    "limit_renders",
    "referenced_result_fields",
    "referenced_roots",
    "referenced_steps",
    "render_condition",
    "set_time_limit",
]
