import { randomBytes } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import { link, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Which service process owns an embedded-database folder (DATA_DIR): the file
 * `<dataDir>/job-manager.lock` holds the owner's pid and its start time (from
 * /proc, so a pid reused after a reboot or a container restart does not count
 * as the owner). A service takes it before it touches the cluster and gives it
 * back when it stops; a service killed with SIGKILL leaves it behind, and the
 * next start finds its owner dead and takes it over.
 *
 * A DATA_DIR shared by two machines (a network folder) is not supported: a pid
 * means nothing on the other one.
 */
export const lockFileName = 'job-manager.lock';

export interface DataDirOwner {
  pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks after boot); absent where there is no /proc. */
  startTime?: string;
  /** ISO time the lock was taken, for people reading the file. */
  since: string;
}

/** The folder is owned by another live job-manager process. */
export class DataDirInUseError extends Error {
  override name = 'DataDirInUseError';
  readonly ownerPid: number;
  readonly dataDir: string;
  constructor(owner: DataDirOwner, dataDir: string) {
    super(
      `another job-manager (pid ${owner.pid}) is using ${dataDir}; stop it, or set DATA_DIR to another folder (or DATABASE_URL to use your own PostgreSQL)`,
    );
    this.ownerPid = owner.pid;
    this.dataDir = dataDir;
  }
}

export interface DataDirLock {
  /** Gives the folder back (only if the file still names this process). Idempotent. */
  release(): Promise<void>;
}

/**
 * Takes `dataDir` for this process: the lock file is created atomically (a
 * hard link of a complete temporary file, or O_EXCL where the file system has
 * no links), so two services starting at once cannot both win. A lock whose
 * owner is dead is removed and taken. The file is also removed when this
 * process exits normally.
 * @throws DataDirInUseError when a live process (this one included) holds it
 */
export async function lockDataDir(dataDir: string): Promise<DataDirLock> {
  const file = join(dataDir, lockFileName);
  const me = currentOwner();
  const text = `${JSON.stringify(me)}\n`;
  for (let attempt = 0; attempt < 5; attempt++) {
    if (await createExclusively(file, text)) {
      const releaseOnExit = () => {
        if (sameOwner(readOwnerSync(file), me)) {
          try {
            unlinkSync(file);
          } catch {}
        }
      };
      process.on('exit', releaseOnExit);
      return {
        async release() {
          process.off('exit', releaseOnExit);
          if (sameOwner(await readOwner(file), me)) await rm(file, { force: true });
        },
      };
    }
    const holder = await readOwner(file);
    if (holder && isLiveOwner(holder)) throw new DataDirInUseError(holder, dataDir);
    // Its owner is gone (SIGKILL, power loss) or the file is not ours to read: stale.
    await rm(file, { force: true });
  }
  throw new Error(`could not take ${file}: it keeps coming back`);
}

/**
 * The live service process that holds `dataDir`, other than this one; undefined
 * when none does (no lock, a stale one, or this process's own).
 */
export async function otherLiveOwner(dataDir: string): Promise<DataDirOwner | undefined> {
  const holder = await readOwner(join(dataDir, lockFileName));
  if (!holder || !isLiveOwner(holder) || sameOwner(holder, currentOwner())) return undefined;
  return holder;
}

/** Whether the process `owner` names still runs (same pid and, where /proc tells, the same start time). */
export function isLiveOwner(owner: DataDirOwner): boolean {
  if (!isAlive(owner.pid)) return false;
  const startTime = processStartTime(owner.pid);
  return startTime === undefined || owner.startTime === undefined || startTime === owner.startTime;
}

function currentOwner(): DataDirOwner {
  return { pid: process.pid, startTime: processStartTime(process.pid), since: new Date().toISOString() };
}

function sameOwner(a: DataDirOwner | undefined, b: DataDirOwner): boolean {
  return a !== undefined && a.pid === b.pid && a.startTime === b.startTime;
}

/** Creates `file` with `text` unless it exists; false when it does. */
async function createExclusively(file: string, text: string): Promise<boolean> {
  const temporary = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  await writeFile(temporary, text, { mode: 0o644 });
  try {
    await link(temporary, file);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    // No hard links here (some mounted folders): O_EXCL, with a moment where the file is still empty.
    try {
      await writeFile(file, text, { flag: 'wx', mode: 0o644 });
      return true;
    } catch (fallback) {
      if ((fallback as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw fallback;
    }
  } finally {
    await unlink(temporary).catch(() => {});
  }
}

async function readOwner(file: string): Promise<DataDirOwner | undefined> {
  return parseOwner(await readFile(file, 'utf8').catch(() => undefined));
}

function readOwnerSync(file: string): DataDirOwner | undefined {
  try {
    return parseOwner(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

function parseOwner(text: string | undefined): DataDirOwner | undefined {
  if (text === undefined) return undefined;
  try {
    const value = JSON.parse(text) as Partial<DataDirOwner>;
    if (!Number.isInteger(value.pid) || (value.pid as number) <= 0) return undefined;
    return {
      pid: value.pid as number,
      startTime: typeof value.startTime === 'string' ? value.startTime : undefined,
      since: String(value.since ?? ''),
    };
  } catch {
    return undefined;
  }
}

/** Field 22 (starttime) of /proc/<pid>/stat; undefined without /proc or for a gone process. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (the command name, in parentheses) may hold spaces: count from the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Whether a process with this pid exists (signal 0; EPERM means it exists but is another user's). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
