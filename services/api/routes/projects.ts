/** REST routes of the projects service (see docs/projects.md). */
import type { RouteSpec } from "../../../src/http/route-spec";

const tag = "projects";

export function projectRoutes(): RouteSpec[] {
	return [
		{
			method: "POST",
			path: "/projects",
			action: "projects.create",
			auth: "required",
			status: 201,
			summary: "Create a project",
			tag
		},
		{
			method: "GET",
			path: "/projects",
			action: "projects.list",
			auth: "required",
			summary: "Projects you own or that are shared with you",
			tag
		},
		{ method: "GET", path: "/projects/:id", action: "projects.get", auth: "required", summary: "One project", tag },
		{
			method: "PATCH",
			path: "/projects/:id",
			action: "projects.update",
			auth: "required",
			summary: "Rename, describe, archive or unarchive (owner)",
			tag
		},
		{
			method: "DELETE",
			path: "/projects/:id",
			action: "projects.remove",
			auth: "required",
			summary: "Delete (soft; purged later) (owner)",
			tag
		},
		{
			method: "POST",
			path: "/projects/:id/restore",
			action: "projects.restore",
			auth: "required",
			summary: "Restore a deleted project (owner)",
			tag
		},
		{
			method: "GET",
			path: "/projects/:id/members",
			action: "projects.members",
			auth: "required",
			summary: "Members and roles",
			tag
		},
		{
			method: "PUT",
			path: "/projects/:id/members/:userId",
			action: "projects.setMember",
			auth: "required",
			summary: "Add a member or change a role (owner)",
			tag
		},
		{
			method: "DELETE",
			path: "/projects/:id/members/:userId",
			action: "projects.removeMember",
			auth: "required",
			summary: "Remove a member (owner) or leave",
			tag
		},
		{
			method: "GET",
			path: "/projects/:id/versions",
			action: "projects.versions",
			auth: "required",
			summary: "Version history, newest first",
			tag
		},
		{
			method: "GET",
			path: "/projects/:id/versions/:n",
			action: "projects.version",
			auth: "required",
			summary: "One version's metadata and manifest",
			tag
		},
		{
			method: "POST",
			path: "/projects/:id/versions",
			action: "projects.commit",
			auth: "required",
			status: 201,
			idempotent: true,
			// File contents travel base64 in JSON: room for a few files at the 10 MiB file limit. The service enforces its own limits.
			bodyLimit: "48mb",
			summary: "Commit a change set on a base version (409 with the head when stale)",
			tag
		},
		{
			method: "GET",
			path: "/projects/:id/files",
			action: "projects.tree",
			auth: "required",
			summary: "The files of a version",
			tag
		},
		{
			method: "GET",
			path: "/projects/:id/files/*path",
			action: "projects.file",
			auth: "required",
			summary: "One file's raw bytes at a version",
			tag
		},
		{
			method: "GET",
			path: "/projects/:id/diff",
			action: "projects.diff",
			auth: "required",
			summary: "Changes between two versions",
			tag
		},
		{
			method: "GET",
			path: "/projects/:id/sandbox",
			action: "projects.sandbox",
			auth: "required",
			summary: "Sandbox status",
			tag
		},
		{
			method: "PUT",
			path: "/projects/:id/sandbox",
			action: "projects.setSandbox",
			auth: "required",
			summary: "Start or stop the sandbox (editor)",
			tag
		}
	];
}
