/**
 * One row type per table. Every query that returns a whole row of a table
 * returns the same columns (kept identical in sql/queries/), so sqlc's
 * per-query interfaces are one type, and one mapper per table reads them all
 * (River's habit of one model per table, with sqlc-gen-typescript's per-query
 * API). The assertions below stop `npm run typecheck` when a query drifts.
 */
import type { CreateJobRow, GetJobByNameRow, ListJobsRow, UpdateJobSettingsRow } from './sqlc/jobs_sql.ts';
import type { GetMessageRow, InsertMessageRow, InsertMessagesRow } from './sqlc/messages_sql.ts';

/** A `jobs` row as the job service reads it. */
export type JobRow = GetJobByNameRow;

/** A `messages` row as the message service reads it (listing queries add a cursor column). */
export type MessageRow = GetMessageRow;

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

/** Compile-time only: each of these queries returns exactly its table's row. */
export type RowTypesAgree = [
  Same<ListJobsRow, JobRow>,
  Same<CreateJobRow, JobRow>,
  Same<UpdateJobSettingsRow, JobRow>,
  Same<InsertMessageRow, MessageRow>,
  Same<InsertMessagesRow, MessageRow>,
] extends true[]
  ? true
  : never;
const rowTypesAgree: RowTypesAgree = true;
void rowTypesAgree;
