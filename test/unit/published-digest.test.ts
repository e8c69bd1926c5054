import t from 'tap'
import { publishedDigest } from '../../src/reconcile/render.js'

const file = (name: string, data: string) => ({ name, data: Buffer.from(data), mode: 0o400 })

t.test('one digest for one set of files, however it is listed or read', async t => {
  const rendered = [file('tls.key', 'KEY'), file('tls.crt', 'CRT'), file('ca.crt', '')]
  const read = new Map([['ca.crt', Buffer.from('')], ['tls.crt', Buffer.from('CRT')], ['tls.key', Buffer.from('KEY')]])
  t.equal(publishedDigest(rendered), publishedDigest(read), 'the files as rendered and as read back agree')
  t.equal(publishedDigest([...rendered].reverse()), publishedDigest(rendered), 'order does not matter')
  t.match(publishedDigest(rendered), /^[0-9a-f]{64}$/)
})

t.test('any difference in names, contents or the set changes it', async t => {
  const base = publishedDigest([file('a', 'bc'), file('d', 'e')])
  t.not(publishedDigest([file('a', 'bd'), file('d', 'e')]), base, 'a changed byte')
  t.not(publishedDigest([file('ab', 'c'), file('d', 'e')]), base, 'a boundary moved between name and contents')
  t.not(publishedDigest([file('a', 'bcd'), file('', 'e')]), base, 'a boundary moved between files')
  t.not(publishedDigest([file('a', 'bc')]), base, 'a file missing')
  t.not(publishedDigest([file('a', 'bc'), file('d', 'e'), file('f', '')]), base, 'an empty file added')
})
