import type { Database } from "./database.ts";

/**
 * A hot statement built once per database handle (drizzle's .prepare(),
 * with sql.placeholder for what changes): built through the query builder
 * for every request, and parsed and planned by PostgreSQL each time, such a
 * statement cost more than the database's own work (the ACME and OCSP
 * sections of docs/benchmarks.md). A transaction is a handle of its own: a
 * statement run on one is built for it.
 */
export function perDatabase<Q>(build: (db: Database) => Q): (db: Database) => Q {
  const built = new WeakMap<Database, Q>();
  return (db) => {
    let q = built.get(db);
    if (!q) built.set(db, (q = build(db)));
    return q;
  };
}
