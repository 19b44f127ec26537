import cron from "node-cron";

/**
 * The next time a cron expression fires after `from`, found by trying each
 * second for ten minutes, then each minute for 62 days (node-cron reports the
 * next run only of a running task). Undefined when it is further away.
 */
export function nextTick(expression: string, from: Date): Date | undefined {
  const task = cron.createTask(expression, () => {});
  try {
    let t = Math.floor(from.getTime() / 1000) * 1000 + 1000;
    for (const [step, count] of [[1000, 600], [60_000, 62 * 24 * 60]] as const) {
      if (step === 60_000) t = Math.ceil(t / 60_000) * 60_000;
      for (let i = 0; i < count; i++, t += step) if (task.match(new Date(t))) return new Date(t);
    }
    return undefined;
  } finally {
    void task.destroy();
  }
}
