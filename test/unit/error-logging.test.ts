// A failed step says which step, keeps its cause, and logs as an object with
// the cause chain, never as String(err) (which drops the stack and cause).
import t from 'tap'
import { StepError } from '../../src/reconcile/reconciler.js'
import { createLogger, serializeError } from '../../src/log/logger.js'

t.test('a step error names the step, keeps the cause and its code', async t => {
  const full = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
  const e = new StepError('render', full)
  t.equal(e.message, 'render: ENOSPC: no space left on device, write')
  t.equal(e.cause, full)
  t.equal(e.code, 'ENOSPC', 'a full disk still reads as one')
})

t.test('errors are logged with their cause chain, without a client error\'s response', async t => {
  const api = Object.assign(new Error('HTTP-Code: 500'), { code: 500, body: '{"huge":"body"}', headers: { 'set-cookie': 'x' } })
  const line: string[] = []
  const log = createLogger({ level: 'info', format: 'json', destination: { write: (s: string) => void line.push(s) } })
  log.warn({ err: new StepError('createRequest', api) }, 'reconcile failed')
  const rec = JSON.parse(line[0]!) as { err: { type: string; message: string; stack: string; cause: { message: string; code: number; body?: unknown; headers?: unknown } } }
  t.equal(rec.err.type, 'StepError')
  t.match(rec.err.message, /^createRequest: the Kubernetes API answered 500/, 'the API error read as the status says it')
  t.match(rec.err.stack, /StepError: createRequest/)
  t.same({ message: rec.err.cause.message, code: rec.err.cause.code }, { message: 'HTTP-Code: 500', code: 500 })
  t.notOk('body' in rec.err.cause || 'headers' in rec.err.cause, 'no response body or headers')
  t.equal(serializeError('plain'), 'plain', 'a thrown string stays a string')
})
