#!/usr/bin/env node
// A reference BTP client: the real ilp-plugin-btp@1.5.0 connects to a connector, authenticates,
// sends ILP Prepares and prints each decoded reply as one JSON line on stdout.
//
//   node interop/client.js btp+ws://alice:SECRET@127.0.0.1:3000 [--count N] [--destination ADDR]
//                          [--amount N] [--expires-in-ms N] [--timeout-ms N] [--summary] [--ildcp]
//
// Each Prepare's data is random and its fulfillment is sha256(data), so receiver.js (or any
// receiver that knows the convention) can fulfill it; every Fulfill is checked against the
// condition. --summary prints one line with counts instead of one line per reply. --ildcp asks
// the connector for our address with the real ilp-protocol-ildcp client instead.
//
// Exit codes: 0 every Prepare got a reply, 2 could not connect/authenticate, 1 anything else.
'use strict'
const crypto = require('crypto')
const BtpPlugin = require('ilp-plugin-btp')
const IlpPacket = require('ilp-packet')

function parseArgs (argv) {
  const opts = { count: 1, destination: 'test.connector.bob', amount: '100', expiresInMs: 30000, timeoutMs: 10000 }
  const rest = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const next = () => argv[++i]
    if (a === '--count') opts.count = Number(next())
    else if (a === '--destination') opts.destination = next()
    else if (a === '--amount') opts.amount = next()
    else if (a === '--expires-in-ms') opts.expiresInMs = Number(next())
    else if (a === '--timeout-ms') opts.timeoutMs = Number(next())
    else if (a === '--summary') opts.summary = true
    else if (a === '--ildcp') opts.ildcp = true
    else rest.push(a)
  }
  opts.server = rest[0]
  return opts
}

function describe (buf, condition) {
  const packet = IlpPacket.deserializeIlpPacket(buf)
  if (packet.type === IlpPacket.Type.TYPE_ILP_FULFILL) {
    const valid = crypto.createHash('sha256').update(packet.data.fulfillment).digest().equals(condition)
    return { type: 'fulfill', valid, fulfillment: packet.data.fulfillment.toString('hex'), data: packet.data.data.toString('hex') }
  }
  if (packet.type === IlpPacket.Type.TYPE_ILP_REJECT) {
    return { type: 'reject', code: packet.data.code, triggeredBy: packet.data.triggeredBy, message: packet.data.message }
  }
  return { type: 'unexpected', packetType: packet.type }
}

async function main () {
  const opts = parseArgs(process.argv.slice(2))
  if (!opts.server) {
    console.error('usage: node client.js btp+ws://USER:SECRET@HOST:PORT [--count N] ...')
    process.exit(1)
  }
  const plugin = new BtpPlugin({ server: opts.server, responseTimeout: opts.timeoutMs, reconnectInterval: 60000 })
  const timer = setTimeout(() => {
    console.log(JSON.stringify({ event: 'connect_failed', reason: 'timed out' }))
    process.exit(2)
  }, opts.timeoutMs)
  try {
    await plugin.connect()
  } catch (err) {
    console.log(JSON.stringify({ event: 'connect_failed', reason: err.message }))
    process.exit(2)
  }
  clearTimeout(timer)
  console.log(JSON.stringify({ event: 'connected' }))
  if (opts.ildcp) {
    const ILDCP = require('ilp-protocol-ildcp')
    const info = await ILDCP.fetch(plugin.sendData.bind(plugin))
    console.log(JSON.stringify({ event: 'ildcp', ...info }))
    await plugin.disconnect()
    process.exit(0)
  }
  const started = Date.now()
  const replies = await Promise.all(Array.from({ length: opts.count }, async (_, i) => {
    const data = Buffer.concat([Buffer.from('interop ' + i + ' '), crypto.randomBytes(16)])
    const fulfillment = crypto.createHash('sha256').update(data).digest()
    const condition = crypto.createHash('sha256').update(fulfillment).digest()
    const prepare = IlpPacket.serializeIlpPrepare({
      amount: opts.amount,
      executionCondition: condition,
      expiresAt: new Date(Date.now() + opts.expiresInMs),
      destination: opts.destination,
      data
    })
    try {
      return describe(await plugin.sendData(prepare), condition)
    } catch (err) {
      return { type: 'error', message: err.message }
    }
  }))
  const seconds = (Date.now() - started) / 1000
  if (opts.summary) {
    const count = (f) => replies.filter(f).length
    const codes = {}
    for (const r of replies) if (r.type === 'reject') codes[r.code] = (codes[r.code] || 0) + 1
    console.log(JSON.stringify({
      event: 'summary',
      sent: replies.length,
      fulfilled: count(r => r.type === 'fulfill' && r.valid),
      invalidFulfills: count(r => r.type === 'fulfill' && !r.valid),
      rejected: count(r => r.type === 'reject'),
      rejectCodes: codes,
      errors: count(r => r.type === 'error'),
      seconds,
      packetsPerSecond: Math.round(replies.length / seconds)
    }))
  } else {
    for (const reply of replies) console.log(JSON.stringify({ event: 'reply', ...reply }))
  }
  await plugin.disconnect()
  process.exit(replies.every(r => r.type === 'fulfill' || r.type === 'reject') ? 0 : 1)
}

main().catch(err => { console.error(err); process.exit(1) })
