import { expect } from 'chai';
import { jobNextSlot } from '../../src/db/sqlc/jobs_sql.ts';
import { useTestDatabase } from '../support/postgres.ts';

/** The scheduling arithmetic (job_next_slot in the jobs migration), on its own. */
describe('job schedule arithmetic', () => {
  const db = useTestDatabase();
  const at = (iso: string) => new Date(iso);
  const next = async (anchor: string, intervalSeconds: number, now: string) =>
    (await jobNextSlot(db().pool, { anchor: at(anchor), intervalSeconds, now: at(now) }))?.nextSlot.toISOString();

  it('advances one interval from the due time, not from when the run happened', async () => {
    // Due at :00, claimed 700 ms late: the next slot is still :02, not :02.7.
    expect(await next('2026-01-01T00:00:00Z', 2, '2026-01-01T00:00:00.700Z')).to.equal('2026-01-01T00:00:02.000Z');
  });

  it('coalesces missed slots into the single next slot after downtime', async () => {
    // Down for an hour with a 120 s job: one run now, then back on the original grid.
    expect(await next('2026-01-01T00:00:00Z', 120, '2026-01-01T01:00:30Z')).to.equal('2026-01-01T01:02:00.000Z');
  });

  it('never returns a slot at or before now', async () => {
    expect(await next('2026-01-01T00:00:00Z', 10, '2026-01-01T00:00:10Z')).to.equal('2026-01-01T00:00:20.000Z');
    expect(await next('2026-01-01T00:00:00Z', 1, '2026-01-01T00:00:00Z')).to.equal('2026-01-01T00:00:01.000Z');
  });

  it('keeps a due time that is still ahead one interval further on', async () => {
    expect(await next('2026-01-01T00:00:30Z', 60, '2026-01-01T00:00:00Z')).to.equal('2026-01-01T00:01:30.000Z');
  });

  it('is plain UTC arithmetic: a daylight-saving change does not move the grid', async () => {
    // 2026-03-29 01:00 UTC is when Europe switches to summer time; the daily slot stays at 00:30 UTC.
    const slot = await next('2026-03-28T00:30:00Z', 86_400, '2026-03-29T12:00:00Z');
    expect(slot).to.equal('2026-03-30T00:30:00.000Z');
    await db().pool.query("SET TIME ZONE 'Europe/Berlin'");
    expect(await next('2026-03-28T00:30:00Z', 86_400, '2026-03-29T12:00:00Z')).to.equal(slot);
  });
});
