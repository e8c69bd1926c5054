// Distinguished names: a strict RFC 4514 parser for literal-subject, and the
// subject's RDN sequence in ASN.1 order. @peculiar/x509's own string parser
// is lenient (it accepts unescaped specials and mangles backslashes), so the
// CSR is built from what this module returns, never from a raw string.

import { quote } from './quote.js'
import * as asn1js from 'asn1js'
import type { Subject } from './types.js'
import { isPrintableString } from './shapes.js'

export const OID = {
  CN: '2.5.4.3',
  SERIALNUMBER: '2.5.4.5',
  C: '2.5.4.6',
  L: '2.5.4.7',
  ST: '2.5.4.8',
  STREET: '2.5.4.9',
  O: '2.5.4.10',
  OU: '2.5.4.11',
  POSTALCODE: '2.5.4.17',
  UID: '0.9.2342.19200300.100.1.1',
  DC: '0.9.2342.19200300.100.1.25',
  emailAddress: '1.2.840.113549.1.9.1',
} as const

const SHORT_NAMES = new Map(Object.entries(OID).map(([name, oid]) => [name.toLowerCase(), oid]))
const KNOWN_TYPES = Object.keys(OID).join(', ')

/** One attribute of an RDN: a string value, or a "#hex" BER value taken as is. */
export type DnAttribute = { oid: string; value: string } | { oid: string; ber: Uint8Array }
export type Rdn = DnAttribute[]
export type DnParse = { ok: true; rdns: Rdn[] } | { ok: false; reason: string }

// RFC 4514 section 2.4: characters that must be escaped inside a value.
const ESCAPABLE = new Set(['\\', '"', '+', ',', ';', '<', '>', ' ', '#', '='])
const MUST_ESCAPE = new Set(['"', ';', '<', '>'])

/**
 * Parses an RFC 4514 string. RDNs come back in string order, which is the
 * reverse of the ASN.1 order (RFC 4514 section 2.1). Lenient only about
 * unescaped spaces around separators, as LDAP tools are.
 */
export function parseRfc4514(text: string): DnParse {
  const fail = (reason: string): DnParse => ({ ok: false, reason })
  const rdns: Rdn[] = []
  let rdn: Rdn = []
  let i = 0
  const skipSpaces = () => {
    while (text[i] === ' ') i++
  }
  if (text.trim() === '') return fail('it is empty')

  for (;;) {
    skipSpaces()
    const typeMatch = /^(?:[0-9]+(?:\.[0-9]+)+|[A-Za-z][A-Za-z0-9-]*)/.exec(text.slice(i))
    if (!typeMatch) return fail(`expected an attribute type at position ${i + 1}`)
    const type = typeMatch[0]
    let oid: string | undefined
    if (/^[0-9]/.test(type)) {
      if (type.split('.').some((arc) => arc.length > 1 && arc.startsWith('0'))) {
        return fail(`${type} is not a dotted OID (arcs have no leading zeros)`)
      }
      oid = type
    } else {
      oid = SHORT_NAMES.get(type.toLowerCase())
      if (oid === undefined) return fail(`unknown attribute type ${quote(type, 40)} (use one of ${KNOWN_TYPES}, or a dotted OID)`)
    }
    i += type.length
    skipSpaces()
    if (text[i] !== '=') return fail(`expected "=" after ${type} at position ${i + 1}`)
    i++
    skipSpaces()

    let attribute: DnAttribute
    if (text[i] === '#') {
      const hex = /^#((?:[0-9A-Fa-f]{2})+)(?=[ ,+]|$)/.exec(text.slice(i))
      if (!hex) return fail(`the value of ${type} starts with "#" but is not an even number of hex digits (write "\\#" for a literal "#")`)
      const ber = Uint8Array.from(Buffer.from(hex[1]!, 'hex'))
      if (!isSingleBerElement(ber)) return fail(`the #hex value of ${type} is not one BER-encoded ASN.1 value`)
      attribute = { oid, ber }
      i += hex[0].length
      skipSpaces()
    } else {
      const bytes: number[] = []
      let trailingSpaces = 0
      while (i < text.length && text[i] !== ',' && text[i] !== '+') {
        const c = text[i]!
        if (c === '\\') {
          const next = text[i + 1] ?? ''
          const pair = /^[0-9A-Fa-f]{2}$/.test(text.slice(i + 1, i + 3)) ? text.slice(i + 1, i + 3) : undefined
          if (pair !== undefined) {
            bytes.push(parseInt(pair, 16))
            i += 3
          } else if (ESCAPABLE.has(next)) {
            bytes.push(next.charCodeAt(0))
            i += 2
          } else {
            return fail(`bad escape "\\${next}" in the value of ${type} (escape only \\ " + , ; < > space # = or write two hex digits)`)
          }
          trailingSpaces = 0
          continue
        }
        if (MUST_ESCAPE.has(c)) return fail(`the value of ${type} contains an unescaped ${JSON.stringify(c)} (write "\\${c}")`)
        const cp = text.codePointAt(i)!
        const char = String.fromCodePoint(cp)
        bytes.push(...Buffer.from(char, 'utf8'))
        trailingSpaces = c === ' ' ? trailingSpaces + 1 : 0
        i += char.length
      }
      let value: string
      try {
        value = new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes.slice(0, bytes.length - trailingSpaces)))
      } catch {
        return fail(`the escaped bytes in the value of ${type} are not UTF-8`)
      }
      if (value === '') return fail(`the value of ${type} is empty`)
      const problem = checkDnValue(oid, value)
      if (problem) return fail(`the value of ${type} ${problem}`)
      attribute = { oid, value }
    }

    rdn.push(attribute)
    if (i >= text.length) break
    const separator = text[i]
    if (separator !== ',' && separator !== '+') return fail(`expected "," or "+" at position ${i + 1}`)
    i++
    if (separator === ',') {
      rdns.push(rdn)
      rdn = []
    }
    if (text.slice(i).trim() === '') return fail(`it ends with a dangling ${JSON.stringify(separator)}`)
  }
  rdns.push(rdn)
  return { ok: true, rdns }
}

/** Value rules from X.520 that a CA or OpenSSL would otherwise trip over later. */
function checkDnValue(oid: string, value: string): string | undefined {
  if (/[\u0000-\u001f\u007f]/.test(value)) return 'contains control characters'
  switch (oid) {
    case OID.C:
      return /^[A-Za-z]{2}$/.test(value) ? undefined : 'is not a two-letter country code'
    case OID.SERIALNUMBER:
      return isPrintableString(value) && value.length <= 64 ? undefined : 'is not a PrintableString of at most 64 characters'
    case OID.CN:
      return [...value].length <= 64 ? undefined : 'is longer than 64 characters'
    case OID.DC:
    case OID.emailAddress:
      return /^[\u0020-\u007e]*$/.test(value) ? undefined : 'must be ASCII'
    default:
      return undefined
  }
}

function isSingleBerElement(ber: Uint8Array): boolean {
  const parsed = asn1js.fromBER(ber)
  return parsed.offset !== -1 && parsed.offset === ber.byteLength
}

/**
 * The subject as an RDN sequence in ASN.1 order, one attribute per RDN (as
 * the CA/Browser Forum requires). Structured fields follow Go's
 * pkix.Name order (C, ST, L, STREET, POSTALCODE, O, OU, CN, SERIALNUMBER),
 * so certificates read like those of cert-manager's own Certificates. A
 * literal subject is reversed from string order, as cert-manager does.
 */
export function subjectRdns(subject: Subject): Rdn[] {
  if (subject.literal !== undefined) {
    const parsed = parseRfc4514(subject.literal)
    if (!parsed.ok) throw new Error(`literal subject: ${parsed.reason}`)
    return [...parsed.rdns].reverse()
  }
  const rdns: Rdn[] = []
  const add = (oid: string, values: readonly string[]) => {
    for (const value of values) rdns.push([{ oid, value }])
  }
  add(OID.C, subject.countries)
  add(OID.ST, subject.provinces)
  add(OID.L, subject.localities)
  add(OID.STREET, subject.streetAddresses)
  add(OID.POSTALCODE, subject.postalCodes)
  add(OID.O, subject.organizations)
  add(OID.OU, subject.organizationalUnits)
  if (subject.commonName !== undefined) add(OID.CN, [subject.commonName])
  if (subject.serialNumber !== undefined) add(OID.SERIALNUMBER, [subject.serialNumber])
  return rdns
}

/** The ASN.1 string type for a value: X.520's choice where it has one, else Go's rule. */
export function stringTypeFor(oid: string, value: string): 'printableString' | 'utf8String' | 'ia5String' {
  if (oid === OID.DC || oid === OID.emailAddress) return 'ia5String'
  return isPrintableString(value) ? 'printableString' : 'utf8String'
}

/** Common names in an RDN sequence (string values only). */
export function commonNames(rdns: readonly Rdn[]): string[] {
  return rdns.flat().flatMap((a) => (a.oid === OID.CN && 'value' in a ? [a.value] : []))
}

/** Escapes a value for an RFC 4514 string, so parseRfc4514 reads back exactly this value. */
export function escapeDnValue(value: string): string {
  const chars = [...value]
  return chars
    .map((c, i) => {
      if ('\\"+,;<>='.includes(c)) return `\\${c}`
      if (/[\u0000-\u001f\u007f]/.test(c)) return `\\${c.charCodeAt(0).toString(16).padStart(2, '0').toUpperCase()}`
      // Leading space or "#" and trailing space would otherwise be syntax.
      if ((i === 0 && (c === ' ' || c === '#')) || (i === chars.length - 1 && c === ' ')) return `\\${c}`
      return c
    })
    .join('')
}
