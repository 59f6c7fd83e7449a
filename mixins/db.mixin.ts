/**
 * Persistence mixin: moleculer-db over the Sequelize adapter, on the node's one shared Sequelize
 * instance. Tables come from migrations (never `sync()`); the adapter is told not to close the shared
 * pool when one service stops. moleculer-db's generic CRUD actions are switched off: each service
 * exposes its own domain actions, which check ownership.
 */
import type { ServiceSchema, Service } from "moleculer";
import DbService from "moleculer-db";
import SequelizeAdapter from "moleculer-db-adapter-sequelize";
import type { ModelStatic, Model, Sequelize, Transaction } from "sequelize";
import { runtimeOf } from "../src/runtime/runtime";
import { withTransaction } from "../src/db/sequelize";

/** Keeps the shared Sequelize instance open when a service disconnects. */
class SharedSequelizeAdapter extends (SequelizeAdapter as unknown as new (...args: unknown[]) => {
	disconnect(): Promise<void>;
}) {
	override disconnect() {
		return Promise.resolve();
	}
}

export interface DbThis extends Service {
	model: ModelStatic<Model>;
	sequelize: Sequelize;
	transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T>;
}

const GENERIC_ACTIONS = ["find", "count", "list", "create", "insert", "get", "update", "remove"] as const;

/**
 * @param defineModel defines the service's main model on the shared instance (no sync; the table
 *   comes from a migration).
 */
export function dbMixin(defineModel: (sequelize: Sequelize) => ModelStatic<Model>): Partial<ServiceSchema> {
	return {
		mixins: [DbService as unknown as ServiceSchema],
		actions: Object.fromEntries(GENERIC_ACTIONS.map(a => [a, false])),
		settings: { idField: "id" },
		created(this: DbThis) {
			const sequelize = runtimeOf(this.broker).sequelize;
			this.sequelize = sequelize;
			// A defined Model class (not a definition object) makes the adapter skip sync().
			(this.schema as { model?: unknown }).model = defineModel(sequelize);
			(this as unknown as { adapter: unknown }).adapter = new SharedSequelizeAdapter(sequelize);
			(this as unknown as { adapter: { init(b: unknown, s: unknown): void } }).adapter.init(this.broker, this);
		},
		methods: {
			transaction<T>(this: DbThis, fn: (tx: Transaction) => Promise<T>): Promise<T> {
				return withTransaction(this.sequelize, fn);
			}
		}
	} as unknown as Partial<ServiceSchema>;
}
