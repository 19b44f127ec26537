import { is, sql, type SQL } from "drizzle-orm";
import { getTableConfig, PgTable, type PgColumn } from "drizzle-orm/pg-core";
import type { Database } from "./database.ts";
import * as schema from "./schema.ts";

/**
 * Every table of the schema as rows, for backups, and back. The table list
 * and its order are derived from schema.ts (every pgTable, parents before
 * the tables whose foreign keys point at them), so a table added there is
 * in the next backup without anyone remembering to list it here.
 *
 * Values travel as PostgreSQL's own text form, which round-trips exactly
 * (bigint beyond 2^53, timestamps to the microsecond, jsonb as written);
 * only bytea (base64) and timestamps (ISO 8601, independent of the
 * session's DateStyle) get an explicit format.
 */
export interface TableDump {
  /** Format of this structure, not of the schema. */
  version: 1;
  tables: Record<string, { columns: string[]; rows: Array<Array<string | null>> }>;
}

export class DumpError extends Error {}

/** Rows per INSERT: well under PostgreSQL's 65535 parameters for any of our tables. */
const CHUNK = 200;

export async function exportTables(db: Database): Promise<TableDump> {
  const dump: TableDump = { version: 1, tables: {} };
  // One transaction: a consistent snapshot across tables (a certificate and its CA, an order and its authorizations).
  await db.transaction(async (tx) => {
    // Timestamps written as UTC: the same instant reads the same from any server.
    await tx.execute(sql`set local time zone 'UTC'`);
    for (const table of tablesInOrder()) {
      const { name, columns } = getTableConfig(table);
      const fields = Object.fromEntries(columns.map((c) => [c.name, exportExpression(c)]));
      const keys = primaryKeyColumns(table);
      const query = tx.select(fields).from(table);
      const rows = (await (keys.length ? query.orderBy(...keys) : query)) as Array<Record<string, string | null>>;
      dump.tables[name] = { columns: columns.map((c) => c.name), rows: rows.map((r) => columns.map((c) => r[c.name] ?? null)) };
    }
  }, { isolationLevel: "repeatable read", accessMode: "read only" });
  return dump;
}

/**
 * Loads a dump in one transaction: all of it or nothing. Without replace it
 * refuses a database that holds any row; with replace it empties every
 * table first. Serial sequences continue after the restored ids.
 */
export async function importTables(db: Database, dump: TableDump, options: { replace: boolean }): Promise<{ tables: number; rows: number }> {
  if (dump.version !== 1) throw new DumpError(`unknown table dump version ${String(dump.version)}`);
  const tables = tablesInOrder();
  const known = new Map(tables.map((t) => [getTableConfig(t).name, t]));
  const unknown = Object.keys(dump.tables).find((name) => !known.has(name));
  // A backup from a newer hsm-ca: loading part of it would lose data silently.
  if (unknown) throw new DumpError(`the backup has a table "${unknown}" that this version of hsm-ca does not know`);
  let rows = 0;
  await db.transaction(async (tx) => {
    if (options.replace) {
      for (const table of [...tables].reverse()) await tx.delete(table);
    } else {
      for (const table of tables) {
        const [row] = await tx.select({ one: sql<number>`1` }).from(table).limit(1);
        if (row) throw new DumpError(`the database is not empty (table ${getTableConfig(table).name} has rows)`);
      }
    }
    for (const table of tables) {
      const config = getTableConfig(table);
      const data = dump.tables[config.name];
      if (!data || data.rows.length === 0) continue;
      const byName = new Map(config.columns.map((c) => [c.name, c]));
      const columns = data.columns.map((name) => {
        const column = byName.get(name);
        if (!column) throw new DumpError(`the backup has a column ${config.name}.${name} that this version of hsm-ca does not know`);
        return column;
      });
      for (let i = 0; i < data.rows.length; i += CHUNK) {
        const values = data.rows.slice(i, i + CHUNK).map((row) => {
          if (row.length !== columns.length) throw new DumpError(`a row of table ${config.name} has ${row.length} values for ${columns.length} columns`);
          return sql`(${sql.join(row.map((v, j) => importExpression(columns[j]!, v)), sql`, `)})`;
        });
        await tx.execute(
          sql`insert into ${table} (${sql.join(columns.map((c) => sql.identifier(c.name)), sql`, `)}) values ${sql.join(values, sql`, `)}`,
        );
      }
      rows += data.rows.length;
      for (const column of columns.filter(isSerial)) {
        // The rows came with their ids: the sequence must continue after them, not collide with them.
        await tx.execute(
          sql`select setval(pg_get_serial_sequence(${`"${config.name}"`}, ${column.name}), coalesce(max(${sql.identifier(column.name)}), 0) + 1, false) from ${table}`,
        );
      }
    }
  });
  return { tables: Object.keys(dump.tables).length, rows };
}

/** Every table of schema.ts, each after the tables its foreign keys reference. */
export function tablesInOrder(): PgTable[] {
  const all = (Object.values(schema) as unknown[]).filter((v): v is PgTable => is(v, PgTable));
  const ordered: PgTable[] = [];
  const visiting = new Set<PgTable>();
  const visit = (table: PgTable) => {
    if (ordered.includes(table)) return;
    if (visiting.has(table)) throw new DumpError(`foreign keys form a cycle through table ${getTableConfig(table).name}`);
    visiting.add(table);
    for (const fk of getTableConfig(table).foreignKeys) {
      const parent = fk.reference().foreignTable;
      if (parent !== table) visit(parent); // a self-reference needs rows in id order, which the export gives
    }
    visiting.delete(table);
    ordered.push(table);
  };
  // Alphabetical first, so that the order does not depend on the order of declarations.
  for (const table of all.sort((a, b) => getTableConfig(a).name.localeCompare(getTableConfig(b).name))) visit(table);
  return ordered;
}

function primaryKeyColumns(table: PgTable): PgColumn[] {
  const config = getTableConfig(table);
  return [...config.columns.filter((c) => c.primary), ...config.primaryKeys.flatMap((pk) => pk.columns)];
}

function isSerial(column: PgColumn): boolean {
  return /serial$/.test(column.getSQLType());
}

/** The SQL type to cast a text value to: serial is a column default, not a type. */
function castType(column: PgColumn): string {
  const type = column.getSQLType();
  return { smallserial: "smallint", serial: "integer", bigserial: "bigint" }[type] ?? type;
}

function isTemporal(column: PgColumn): boolean {
  return /^(timestamp|date|time)/.test(column.getSQLType());
}

function exportExpression(column: PgColumn): SQL<string | null> {
  if (column.getSQLType() === "bytea") return sql<string | null>`encode(${column}, 'base64')`;
  // JSON renders timestamps as ISO 8601 with every digit, whatever the session's DateStyle.
  if (isTemporal(column)) return sql<string | null>`to_json(${column}) #>> '{}'`;
  return sql<string | null>`${column}::text`;
}

/**
 * The parameter is declared text so that neither driver converts it on the
 * way (postgres.js would re-encode a bytea or jsonb parameter); PostgreSQL
 * then parses it with the column type's own input function.
 */
function importExpression(column: PgColumn, value: string | null): SQL {
  if (value === null) return sql`null`;
  if (column.getSQLType() === "bytea") return sql`decode(${value}::text, 'base64')`;
  return sql`cast(${value}::text as ${sql.raw(castType(column))})`;
}
