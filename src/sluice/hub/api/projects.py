"""Project APIs: ListProject, GetProject, CreateProject, UpdateProject, DeleteProject (all on ``/``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...wire import errors as E
from .context import ApiContext
from .request import MAX_PAGE, PROJECT_NAME, Request, check_name, json_response, response

__all__ = ["is_list_project", "list_projects", "get_project", "create_project", "update_project", "delete_project"]


def is_list_project(req: Request) -> bool:
    """``GET /`` is ListProject when the Host names no project, or when it carries the paging parameters
    GetProject never sends (a Host like "sls.example.internal" via HTTP_PROXY has no project, but its first
    label would look like one)."""
    return req.project is None or "offset" in req.params or "size" in req.params


def _named(req: Request) -> str:
    if req.project is None:
        raise E.ProjectNotExist("no project in the Host header (expected Host: <project>.<endpoint>)")
    return req.project


def project_json(ctx: ApiContext, name: str) -> dict[str, Any]:
    p = ctx.store.get_project(name)
    return {
        "projectName": p.name,
        "description": p.description,
        "status": "Normal",
        "region": ctx.config.region,
        "owner": "",
        "createTime": str(p.create_time),
        "lastModifyTime": str(p.last_modify_time),
        "resourceGroupId": p.resource_group_id,
        "dataRedundancyType": p.data_redundancy_type or "LRS",
    }


async def list_projects(ctx: ApiContext, req: Request) -> web.StreamResponse:
    offset, size = max(0, req.int_param("offset", 0)), req.int_param("size", 100)
    size = MAX_PAGE if size < 0 or size > MAX_PAGE else size  # bounded work per request; clients page on
    pattern = req.params.get("projectName") or ""
    names = [n for n in ctx.store.project_names() if pattern in n and req.principal.can_read(n)]
    page = names[offset: offset + size]
    return json_response({"count": len(page), "total": len(names),
                          "projects": [project_json(ctx, n) for n in page]})


async def get_project(ctx: ApiContext, req: Request) -> web.StreamResponse:
    return json_response(project_json(ctx, _named(req)))


async def create_project(ctx: ApiContext, req: Request) -> web.StreamResponse:
    data = req.json() if req.body else {}
    if not isinstance(data, dict):
        raise E.ProjectInfoInvalid("the project body must be a JSON object")
    name = req.project or data.get("projectName")
    if not check_name(PROJECT_NAME, name):
        raise E.ProjectInfoInvalid(f"project name {name!r} is invalid: 3-63 lowercase letters, digits or hyphens")
    desc = data.get("description", "")
    extra = {k: str(data[k]) for k in ("resourceGroupId", "dataRedundancyType") if data.get(k)}
    await ctx.store.create_project(name, str(desc or ""), extra)
    return response()


async def update_project(ctx: ApiContext, req: Request) -> web.StreamResponse:
    project = _named(req)
    data = req.json()
    desc = data.get("description", "") if isinstance(data, dict) else ""
    await ctx.store.update_project(project, str(desc))
    return response()


async def delete_project(ctx: ApiContext, req: Request) -> web.StreamResponse:
    project = _named(req)
    await ctx.store.delete_project(project)
    ctx.coordinators.forget(project)
    return response()
