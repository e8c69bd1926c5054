// Quotes a value for a message, cut short: a pod author controls the value,
// and a huge one must not flood a gRPC status or an Event.
export function quote(value: string, max = 100): string {
  return JSON.stringify(value.length > max ? `${value.slice(0, max)}…` : value)
}
