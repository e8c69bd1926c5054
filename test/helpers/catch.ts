/** The error fn throws, or undefined: for tests that inspect more than t.throws matches. */
export function catchErr(fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  return undefined
}
