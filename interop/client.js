#!/usr/bin/env node
// A reference BTP client: the real ilp-plugin-btp@1.5.0 connects to a connector, authenticates,
// sends ILP Prepares and prints each decoded reply as one JSON line on stdout.
//
//   node interop/client.js btp+ws://alice:SECRET@127.0.0.1:3000 [--count N] [--destination ADDR]
//                          [--amount N] [--expires-in-ms N] [--timeout-ms N]
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
    else rest.push(a)
  }
  opts.server = rest[0]
  return opts
}

function describe (buf) {
  const packet = IlpPacket.deserializeIlpPacket(buf)
  if (packet.type === IlpPacket.Type.TYPE_ILP_FULFILL) {
    return { type: 'fulfill', fulfillment: packet.data.fulfillment.toString('hex'), data: packet.data.data.toString('hex') }
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
  const replies = await Promise.all(Array.from({ length: opts.count }, async (_, i) => {
    const fulfillment = crypto.randomBytes(32)
    const prepare = IlpPacket.serializeIlpPrepare({
      amount: opts.amount,
      executionCondition: crypto.createHash('sha256').update(fulfillment).digest(),
      expiresAt: new Date(Date.now() + opts.expiresInMs),
      destination: opts.destination,
      data: Buffer.from('interop ' + i)
    })
    try {
      return describe(await plugin.sendData(prepare))
    } catch (err) {
      return { type: 'error', message: err.message }
    }
  }))
  for (const reply of replies) console.log(JSON.stringify({ event: 'reply', ...reply }))
  await plugin.disconnect()
  process.exit(replies.every(r => r.type === 'fulfill' || r.type === 'reject') ? 0 : 1)
}

main().catch(err => { console.error(err); process.exit(1) })
