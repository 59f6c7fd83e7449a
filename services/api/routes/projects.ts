/** REST routes of the projects service (see docs/projects.md). */
import type { RouteSpec } from "../../../src/http/route-spec";
import { views } from "../../../src/projects/views";

const tag = "projects";

export function projectRoutes(): RouteSpec[] {
	return [
		{
			method: "POST",
			path: "/projects",
			action: "projects.create",
			response: views.create,
			errors: { 403: ["INSUFFICIENT_ROLE"], 404: ["NOT_FOUND"] },
			auth: "required",
			status: 201,
			summary: "Create a project",
			tag
		},
		{
			method: "GET",
			path: "/projects",
			action: "projects.list",
			response: views.list,
			// An organisation API key naming another organisation (`?orgId=`).
			errors: { 404: ["NOT_FOUND"] },
			auth: "required",
			summary: "Projects you own or that are shared with you",
			tag
		},
		{
			method: "GET",
			path: "/projects/:id",
			action: "projects.get",
			response: views.get,
			auth: "required",
			summary: "One project",
			tag
		},
		{
			method: "PATCH",
			path: "/projects/:id",
			action: "projects.update",
			response: views.update,
			errors: { 403: ["INSUFFICIENT_ROLE"] },
			auth: "required",
			summary: "Rename, describe, archive or unarchive (owner)",
			tag
		},
		{
			method: "DELETE",
			path: "/projects/:id",
			action: "projects.remove",
			response: views.remove,
			errors: { 403: ["INSUFFICIENT_ROLE"] },
			auth: "required",
			summary: "Delete (soft; purged later) (owner)",
			tag
		},
		{
			method: "POST",
			path: "/projects/:id/restore",
			action: "projects.restore",
			response: views.restore,
			errors: { 403: ["INSUFFICIENT_ROLE"], 409: ["PROJECT_NOT_DELETED"] },
			auth: "required",
			summary: "Restore a deleted project (owner)",
			tag
		},
		{
			method: "POST",
			path: "/projects/:id/transfer",
			action: "projects.transfer",
			response: views.transfer,
			errors: { 403: ["INSUFFICIENT_ROLE"], 409: ["ALREADY_IN_ORG"] },
			auth: "required",
			summary: "Move your project into an organisation (project owner; organisation owner or admin)",
			tag
		},
		{
			method: "GET",
			path: "/projects/:id/members",
			action: "projects.members",
			response: views.members,
			auth: "required",
			summary: "Members and roles",
			tag
		},
		{
			method: "PUT",
			path: "/projects/:id/members/:userId",
			action: "projects.setMember",
			response: views.setMember,
			errors: { 403: ["FORBIDDEN", "INSUFFICIENT_ROLE"], 404: ["USER_NOT_FOUND"], 409: ["LAST_OWNER"] },
			auth: "required",
			summary: "Add a member or change a role (owner)",
			tag
		},
		{
			method: "DELETE",
			path: "/projects/:id/members/:userId",
			action: "projects.removeMember",
			response: views.removeMember,
			errors: { 403: ["FORBIDDEN", "INSUFFICIENT_ROLE"], 404: ["NOT_A_MEMBER"], 409: ["LAST_OWNER"] },
			auth: "required",
			summary: "Remove a member (owner) or leave",
			tag
		},
		{
			method: "GET",
			path: "/projects/:id/versions",
			action: "projects.versions",
			response: views.versions,
			auth: "required",
			summary: "Version history, newest first",
			tag
		},
		{
			method: "GET",
			path: "/projects/:id/versions/:n",
			action: "projects.version",
			response: views.version,
			auth: "required",
			summary: "One version's metadata and manifest",
			tag
		},
		{
			method: "POST",
			path: "/projects/:id/versions",
			action: "projects.commit",
			response: views.commit,
			errors: {
				403: ["INSUFFICIENT_ROLE"],
				409: [
					"VERSION_CONFLICT",
					"PATH_EXISTS",
					"PATH_NOT_FOUND",
					"CASE_CONFLICT",
					"FILE_DIRECTORY_CONFLICT",
					"PROJECT_ARCHIVED"
				],
				413: ["FILE_TOO_LARGE", "TOO_MANY_FILES"],
				422: ["PATH_INVALID", "CHANGESET_INVALID", "DUPLICATE_PATH_IN_CHANGESET"]
			},
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
			response: views.tree,
			auth: "required",
			summary: "The files of a version",
			tag
		},
		{
			method: "GET",
			path: "/projects/:id/files/*path",
			action: "projects.file",
			response: views.file,
			// The file's own media type (from its name): any.
			contentType: "*/*",
			auth: "required",
			summary: "One file's raw bytes at a version",
			tag
		},
		{
			method: "GET",
			path: "/projects/:id/diff",
			action: "projects.diff",
			response: views.diff,
			auth: "required",
			summary: "Changes between two versions",
			tag
		},
		{
			method: "GET",
			path: "/projects/:id/sandbox",
			action: "projects.sandbox",
			response: views.sandbox,
			auth: "required",
			summary: "Sandbox status",
			tag
		},
		{
			method: "PUT",
			path: "/projects/:id/sandbox",
			action: "projects.setSandbox",
			response: views.setSandbox,
			errors: {
				403: ["INSUFFICIENT_ROLE"],
				409: ["ILLEGAL_SANDBOX_TRANSITION", "SANDBOX_TRANSITION_NOT_ALLOWED", "PROJECT_ARCHIVED"]
			},
			auth: "required",
			summary: "Start or stop the sandbox (editor)",
			tag
		}
	];
}
