"""The task tools and the file-lock tools of ``runner serve``.

``decompose_task`` may sample the calling client's model: a resolver asks for it only when
no callable agent has the ``task_decomposition`` capability and the client declared the
``sampling`` capability; the SDK carries the request on both protocol eras.
"""

# No ``from __future__ import annotations``: the SDK evaluates the tools' annotations, and
# ``Resolve(sample_decomposition)`` names a function local to ``register_task_tools``.
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.server.mcpserver import Context, Resolve, Sample
from mcp_types import (
    CallToolResult,
    ClientCapabilities,
    CreateMessageResult,
    SamplingCapability,
    SamplingMessage,
    TextContent,
)

from runner.server.toolbox import Toolbox, need_operator_for_force
from runner.service.policy import Principal
from runner.service.tasks import MAX_SUBTASKS, SAMPLING_PROMPT


def register_task_tools(server: MCPServer, box: Toolbox) -> None:
    orch = box.orch
    tasks = orch.tasks
    locks = orch.locks

    def client_can_sample(ctx: Context) -> bool:
        try:
            return bool(ctx.request_context.session.check_client_capability(ClientCapabilities(sampling=SamplingCapability())))
        except Exception:  # noqa: BLE001 - no session (in-process edge cases): no sampling
            return False

    def sample_decomposition(task: str, ctx: Context) -> Sample | None:
        if tasks.decomposer() is not None or not isinstance(task, str) or not task.strip() or not client_can_sample(ctx):
            return None
        prompt = SAMPLING_PROMPT.format(n=MAX_SUBTASKS, task=task[:20_000])
        return Sample(
            [SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
            max_tokens=2_000,
            system_prompt="You split work for a team of AI agents. Reply with JSON only.",
        )

    async def decompose_task(
        ctx: Context,
        task: str,
        available_models: list[dict[str, Any]] | None = None,
        sampled: Annotated[CreateMessageResult | None, Resolve(sample_decomposition)] = None,
    ) -> CallToolResult:
        text = None
        if sampled is not None:
            content = sampled.content
            text = content.text if isinstance(content, TextContent) else None
        note = None if client_can_sample(ctx) else "the client does not offer MCP sampling"
        args = {"task": task, "available_models": available_models}
        return await box.invoke(ctx, "decompose_task", args,
                                lambda a, w: tasks.decompose(a["task"], a["available_models"], text, note),
                                lambda d: f"{d['count']} subtask(s) by {d['method']}")

    server.add_tool(decompose_task, description=(
        "Break a task into subtasks (description, required_capabilities, depends_on, priority). Asks an agent "
        "with the task_decomposition capability if there is one, else your own model through MCP sampling if "
        "you offer it, else splits the text by its structure (lists, numbered items, headings, sentences); "
        "`method` says which. Follow with assign_subtasks."))

    async def assign_subtasks(
        ctx: Context, subtasks: list[dict[str, Any]], available_models: list[dict[str, Any]] | None = None
    ) -> CallToolResult:
        return await box.invoke(ctx, "assign_subtasks", locals(), lambda a, w: tasks.assign(a["subtasks"], a["available_models"]),
                                lambda d: f"{len(d['assignments'])} assigned, {len(d['unassigned'])} unassigned")

    server.add_tool(assign_subtasks, description=(
        "Choose an agent for each subtask: it must have every required capability, be neither offline nor in "
        "error nor behind an open circuit, and the least loaded wins (pull steps in flight, then status). "
        "Uses the registered agents unless available_models is given. Assigns nothing by itself: follow with "
        "delegate_subtask for each."))

    async def merge_results(ctx: Context, results: list[Any]) -> CallToolResult:
        return await box.invoke(ctx, "merge_results", locals(), lambda a, w: tasks.merge(a["results"]),
                                lambda d: f"merged {d['count']} result(s) ({d['strategy']}), {len(d['conflicts'])} conflict(s)")

    server.add_tool(merge_results, description=(
        "Combine subtask results deterministically: objects deep-merged (differing values reported as "
        "conflicts, first kept), lists concatenated without duplicates, texts joined without repeated "
        "paragraphs. Accepts plain results or {subtask_id, result} wrappers."))

    # -- file locks ------------------------------------------------------------------------
    async def acquire_file_lock(
        ctx: Context, agent_id: str, file_path: str, exclusive: bool = True, ttl_seconds: float = 300
    ) -> CallToolResult:
        return await box.invoke(ctx, "acquire_file_lock", locals(),
                                lambda a, w: locks.acquire(a["agent_id"], a["file_path"], a["exclusive"], a["ttl_seconds"]),
                                lambda d: (f"lock on {d['file_path']} granted, token {d['fencing_token']}, until {d['expires_at']}"
                                           if d["granted"] else f"lock on {d['file_path']} refused: held by "
                                           + ", ".join(c["agent_id"] for c in d["conflicts"])))

    server.add_tool(acquire_file_lock, description=(
        "Lease the files a path or glob matches (src/**/*.py) before editing them. Two locks conflict when "
        "their path sets overlap (decided exactly) and one is exclusive. A grant returns a fencing token "
        "(increasing per path; pass it along with your writes) and expires_at; renew before it expires. "
        "A refusal names who holds what, with an example path in both."))

    async def renew_file_lock(ctx: Context, agent_id: str, file_path: str, ttl_seconds: float = 300) -> CallToolResult:
        return await box.invoke(ctx, "renew_file_lock", locals(),
                                lambda a, w: locks.renew(a["agent_id"], a["file_path"], a["ttl_seconds"]),
                                lambda d: f"lock on {d['file_path']} renewed until {d['expires_at']}")

    server.add_tool(renew_file_lock, description="Extend a live lock you hold (same fencing token); an expired lock must be acquired again.")

    async def release_file_lock(ctx: Context, agent_id: str, file_path: str, force: bool = False) -> CallToolResult:
        def call(a: dict[str, Any], w: Principal) -> dict[str, Any]:
            need_operator_for_force(a, w)
            return locks.release(a["agent_id"], a["file_path"], a["force"])

        return await box.invoke(ctx, "release_file_lock", locals(), call,
                                lambda d: f"{d['file_path']}: {'released' if d['released'] else 'not held'}")

    server.add_tool(release_file_lock, description=(
        "Release your lock on exactly this path or pattern when done. force=true (operator only) releases "
        "whoever holds it."))

    async def check_file_lock(ctx: Context, file_path: str) -> CallToolResult:
        return await box.invoke(ctx, "check_file_lock", locals(), lambda a, w: locks.check(a["file_path"]),
                                lambda d: f"{d['file_path']}: " + (f"locked by {', '.join(x['agent_id'] for x in d['locks'])}"
                                                                   if d["locked"] else "free"))

    server.add_tool(check_file_lock, description=(
        "Who holds live locks overlapping a path or pattern (holder, exclusive, fencing token, expiry)."))
