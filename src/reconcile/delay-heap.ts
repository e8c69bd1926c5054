// A min-heap of (due time, key) with at most one entry per key. The work
// queue arms a single timer for the top of this heap instead of one timer per
// key: with 1000 volumes each waiting for its renewal, the runtime then holds
// one timer, not 1000.
//
// Pure: no clock, no timers; the caller passes due times in and asks what is
// due.

interface Entry<K> {
  key: K
  due: number
  /** Insertion order: ties on `due` come out first-in, first-out. */
  seq: number
}

export class DelayHeap<K = string> {
  #items: Entry<K>[] = []
  // key → position in #items, so a key's entry can be found and moved in
  // O(log n) when an earlier due time arrives for it.
  #index = new Map<K, number>()
  #seq = 0

  get size(): number {
    return this.#items.length
  }

  has(key: K): boolean {
    return this.#index.has(key)
  }

  /** The due time held for `key`, if any. */
  dueOf(key: K): number | undefined {
    const i = this.#index.get(key)
    return i === undefined ? undefined : this.#items[i]!.due
  }

  /**
   * Schedules `key` at `due`. When the key is already held, the earlier due
   * time wins: a later request never postpones work already promised sooner.
   * Returns true when the heap changed.
   */
  push(key: K, due: number): boolean {
    const i = this.#index.get(key)
    if (i !== undefined) {
      const entry = this.#items[i]!
      if (entry.due <= due) return false
      entry.due = due
      this.#up(i)
      return true
    }
    this.#items.push({ key, due, seq: this.#seq++ })
    this.#index.set(key, this.#items.length - 1)
    this.#up(this.#items.length - 1)
    return true
  }

  /** The earliest entry, without removing it. */
  peek(): { key: K; due: number } | undefined {
    const top = this.#items[0]
    return top === undefined ? undefined : { key: top.key, due: top.due }
  }

  /** Removes and returns the earliest entry. */
  pop(): { key: K; due: number } | undefined {
    const top = this.#items[0]
    if (top === undefined) return undefined
    this.#removeAt(0)
    return { key: top.key, due: top.due }
  }

  /** Removes and returns, earliest first, every key due at or before `now`. */
  popDue(now: number): K[] {
    const out: K[] = []
    while (this.#items.length > 0 && this.#items[0]!.due <= now) out.push(this.pop()!.key)
    return out
  }

  /** Drops `key`'s entry; returns whether there was one. */
  delete(key: K): boolean {
    const i = this.#index.get(key)
    if (i === undefined) return false
    this.#removeAt(i)
    return true
  }

  #removeAt(i: number): void {
    const items = this.#items
    const removed = items[i]!
    const last = items.pop()!
    this.#index.delete(removed.key)
    if (i === items.length) return
    items[i] = last
    this.#index.set(last.key, i)
    // The moved entry may belong above or below its new place.
    this.#up(i)
    this.#down(this.#index.get(last.key)!)
  }

  #less(a: Entry<K>, b: Entry<K>): boolean {
    return a.due < b.due || (a.due === b.due && a.seq < b.seq)
  }

  #swap(i: number, j: number): void {
    const items = this.#items
    const a = items[i]!
    const b = items[j]!
    items[i] = b
    items[j] = a
    this.#index.set(b.key, i)
    this.#index.set(a.key, j)
  }

  #up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.#less(this.#items[i]!, this.#items[parent]!)) return
      this.#swap(i, parent)
      i = parent
    }
  }

  #down(i: number): void {
    const n = this.#items.length
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let min = i
      if (l < n && this.#less(this.#items[l]!, this.#items[min]!)) min = l
      if (r < n && this.#less(this.#items[r]!, this.#items[min]!)) min = r
      if (min === i) return
      this.#swap(i, min)
      i = min
    }
  }
}
