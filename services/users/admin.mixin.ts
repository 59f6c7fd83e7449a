/**
 * Account administration of the users service, mixed into services/users.service.ts: the user list
 * and search, one user in detail, and an administrator's changes. Each action calls src/users/admin.ts.
 */
import type { Role } from "../../src/auth/user";
import { TIER_ORDER } from "../../src/domain/tiers";
import { PAGE_PARAMS } from "../../src/http/list-params";
import { currentUser, type Ctx } from "../../src/kit/service";
import type { AdminPatch, UserFilter } from "../../src/users/admin";
import type { UsersMixin, UsersThis } from "./host";

const ROLES: Role[] = ["user", "admin", "operator"];

export const adminMixin: UsersMixin = {
	name: "users",
	actions: {
		adminListUsers: {
			permissions: ["admin", "operator"],
			scope: "admin",
			params: {
				$$strict: "remove",
				...PAGE_PARAMS,
				q: {
					type: "string",
					min: 1,
					max: 254,
					trim: true,
					optional: true,
					description: "e-mail prefix, user id or wallet address (prefix)"
				},
				role: { type: "enum", values: ROLES, optional: true },
				disabled: { type: "boolean", convert: true, optional: true }
			},
			async handler(this: UsersThis, ctx: Ctx<UserFilter>) {
				return this.admin.list(ctx.params);
			}
		},

		adminGetUser: {
			permissions: ["admin", "operator"],
			scope: "admin",
			params: { $$strict: "remove", id: { type: "uuid" } },
			async handler(this: UsersThis, ctx: Ctx<{ id: string }>) {
				return this.admin.get(ctx.params.id);
			}
		},

		adminUpdateUser: {
			permissions: ["admin"],
			scope: "admin",
			params: {
				$$strict: "remove",
				id: { type: "uuid" },
				role: { type: "enum", values: ROLES, optional: true },
				tierOverride: {
					type: "enum",
					values: [...TIER_ORDER],
					optional: true,
					nullable: true,
					description: "null clears the override"
				},
				disabled: { type: "boolean", optional: true }
			},
			async handler(this: UsersThis, ctx: Ctx<AdminPatch & { id: string }>) {
				const { id, ...patch } = ctx.params;
				return this.admin.update(currentUser(ctx), id, patch);
			}
		}
	}
};
