import { setTimeout as sleep } from 'node:timers/promises'

/** Polls until fn returns something other than undefined; resolves with it and the time it took. */
export async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs: number, everyMs = 200): Promise<{ value: T; ms: number }> {
  const start = Date.now()
  for (;;) {
    const value = await Promise.resolve().then(fn).catch(() => undefined)
    if (value !== undefined) return { value, ms: Date.now() - start }
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)}s waiting for ${what}`)
    await sleep(everyMs)
  }
}

/** Runs fn over items with at most `limit` at once. */
export async function pool<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    for (let i = next++; i < items.length; i = next++) await fn(items[i]!, i)
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker))
}
