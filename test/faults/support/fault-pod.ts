// A service process for the fault suite: the real entry point (src/main.ts),
// optionally with its clock shifted by FAULT_CLOCK_OFFSET_MS to play a pod
// whose clock is wrong. Only wall-clock time (Date) moves; timers do not.
const offset = Number(process.env.FAULT_CLOCK_OFFSET_MS ?? 0);
if (offset !== 0) {
  const RealDate = Date;
  class ShiftedDate extends RealDate {
    constructor(...args: unknown[]) {
      if (args.length === 0) super(RealDate.now() + offset);
      else super(...(args as [number]));
    }
    static override now(): number {
      return RealDate.now() + offset;
    }
  }
  globalThis.Date = ShiftedDate as DateConstructor;
}
await import('../../../src/main.ts');
