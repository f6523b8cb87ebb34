#!/usr/bin/env node
// A reference receiver: the real ilp-plugin-btp@1.5.0 that fulfills every Prepare made by
// client.js (whose fulfillment is sha256(data)) and rejects anything else with F06.
//
//   node interop/receiver.js --listen PORT --secret SECRET      BTP server (we dial it)
//   node interop/receiver.js btp+ws://USER:SECRET@HOST:PORT      BTP client (it dials a connector)
//
// Prints {"event":"ready"} once listening or connected, and a summary line on SIGTERM/SIGINT.
'use strict'
const crypto = require('crypto')
const BtpPlugin = require('ilp-plugin-btp')
const IlpPacket = require('ilp-packet')

const args = process.argv.slice(2)
const opt = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined }
const listen = opt('--listen')
const plugin = listen
  ? new BtpPlugin({ listener: { port: Number(listen), secret: opt('--secret') } })
  : new BtpPlugin({ server: args[0], reconnectInterval: 1000 })

let fulfilled = 0
let rejected = 0
plugin.registerDataHandler(async (data) => {
  const prepare = IlpPacket.deserializeIlpPrepare(data)
  const fulfillment = crypto.createHash('sha256').update(prepare.data).digest()
  const condition = crypto.createHash('sha256').update(fulfillment).digest()
  if (!condition.equals(prepare.executionCondition)) {
    rejected++
    return IlpPacket.serializeIlpReject({ code: 'F06', triggeredBy: '', message: 'unexpected payment', data: Buffer.alloc(0) })
  }
  fulfilled++
  return IlpPacket.serializeIlpFulfill({ fulfillment, data: Buffer.from('thanks') })
})

function done () {
  console.log(JSON.stringify({ event: 'summary', fulfilled, rejected }))
  process.exit(0)
}
process.on('SIGTERM', done)
process.on('SIGINT', done)

plugin.connect().then(() => console.log(JSON.stringify({ event: 'ready' })))
  .catch(err => { console.log(JSON.stringify({ event: 'connect_failed', reason: err.message })); process.exit(2) })
