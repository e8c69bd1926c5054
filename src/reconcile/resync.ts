// Level-triggered healing: every period, each volume this process knows is
// looked at again, so a file deleted or altered under a running pod, or a
// mount gone, is found with nothing to tell the driver. A ready volume is
// checked cheaply (its files against the digest recorded when rendered, its
// mount: Reconciler.servesAsIs); only a volume in doubt, or not ready, costs a
// full reconcile. Renewal timers stay as they are: the pass adds no delays.

import type { VolumeStatus } from './status.js'

export interface ResyncDeps {
  volumes: () => Iterable<string>
  status: (volumeId: string) => VolumeStatus | undefined
  servesAsIs: (volumeId: string, targetPath: string) => Promise<boolean>
  enqueue: (volumeId: string) => void
}

/** One pass, one volume at a time (each check is a few small reads): how many went to the queue. */
export async function resyncPass(d: ResyncDeps, signal?: AbortSignal): Promise<{ checked: number; enqueued: number }> {
  let checked = 0
  let enqueued = 0
  for (const volumeId of [...d.volumes()]) {
    if (signal?.aborted) break
    checked++
    const s = d.status(volumeId)
    const serves = s?.ready === true && s.targetPath !== undefined && await d.servesAsIs(volumeId, s.targetPath).catch(() => false)
    if (!serves) {
      d.enqueue(volumeId)
      enqueued++
    }
    // The checks read synchronously from tmpfs: let CSI calls in between volumes.
    await new Promise(resolve => setImmediate(resolve))
  }
  return { checked, enqueued }
}

/** Runs resyncPass every `periodMs`; a pass still running when the next is due is not doubled. */
export function startResync(d: ResyncDeps, periodMs: number, onPass?: (r: { checked: number; enqueued: number }) => void): { stop: () => void } {
  const stopped = new AbortController()
  let running = false
  const timer = setInterval(() => {
    if (running) return
    running = true
    void resyncPass(d, stopped.signal).then(r => onPass?.(r), () => undefined).finally(() => (running = false))
  }, periodMs)
  timer.unref()
  return {
    stop: () => {
      clearInterval(timer)
      stopped.abort()
    },
  }
}
