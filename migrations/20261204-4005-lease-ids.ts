import type { MigrationParams } from "../src/db/migrate";
import { tasksLeaseSql } from "./20261126-4002-tasks-lease-function";

/**
 * A lease call's answer can be lost after its leases committed: the worker's call timed out (a NATS
 * outage buffered the request past the worker's timeout, a slow database) while the tasks node went on
 * and leased. Those tasks sat leased to a worker that never heard of them until their lease expired,
 * then ran again as a second attempt. Now the worker names the lease id of each call (every task the
 * call takes gets it), and a worker whose call failed asks for that id's tasks in its next call
 * (`recover`, docs/task-lifecycle.md): they come back to it, under the same lease, without a new attempt.
 *
 * tasks_lease gets an overload with an 11th argument, p_lease_id (NULL: a fresh lease id per task).
 * The 10-argument function stays, so tasks nodes of the previous release keep leasing during a rolling
 * upgrade; a later release can drop it.
 */
const NEW =
	"tasks_lease(timestamptz, integer, integer, text, timestamptz, text[], integer[], integer, integer[], integer[], uuid)";

export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(tasksLeaseSql(true));
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`DROP FUNCTION IF EXISTS ${NEW}`);
}
