#!/usr/bin/env node
// A STREAM payment through a connector, with the real ilp-protocol-stream@2.7.1 on both ends,
// each over its own ilp-plugin-btp@1.5.0 child connection (each learns its address and asset
// from the connector by IL-DCP):
//
//   node interop/stream.js --sender btp+ws://usd:SECRET@HOST:PORT \
//                          --receiver btp+ws://eur:SECRET@HOST:PORT --amount 10000
//
// Prints one JSON line: {"event":"paid","sent":..,"delivered":..,"received":..,
// "senderAsset":{..},"receiverAsset":{..}} (amounts in each side's own units), or
// {"event":"failed","error":".."} and exits 1.
'use strict'
const BtpPlugin = require('ilp-plugin-btp')
const { createServer, createConnection, DataAndMoneyStream } = require('ilp-protocol-stream')

// ilp-protocol-stream@2.7.1 predates Node 18, whose streams made `closed` a read-only getter;
// its streams assign their own `closed` flag. Give them a plain property back (nothing else of
// the library is changed).
Object.defineProperty(DataAndMoneyStream.prototype, 'closed', {
  get () { return this._streamClosed === true },
  set (value) { this._streamClosed = value },
  configurable: true
})

const args = process.argv.slice(2)
const opt = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined }

async function main () {
  const amount = opt('--amount') || '10000'
  const receiverPlugin = new BtpPlugin({ server: opt('--receiver') })
  const senderPlugin = new BtpPlugin({ server: opt('--sender') })
  const server = await createServer({ plugin: receiverPlugin })
  let received = 0n
  const gotIt = new Promise((resolve) => {
    server.on('connection', (conn) => {
      conn.on('stream', (stream) => {
        stream.setReceiveMax('18446744073709551615')
        stream.on('money', (value) => {
          received += BigInt(value)
          resolve()
        })
      })
    })
  })
  const { destinationAccount, sharedSecret } = server.generateAddressAndSecret()
  const conn = await createConnection({ plugin: senderPlugin, destinationAccount, sharedSecret })
  const stream = conn.createStream()
  await stream.sendTotal(amount, { timeout: 20000 })
  await Promise.race([gotIt, new Promise((resolve) => setTimeout(resolve, 2000))])
  await new Promise((resolve) => setTimeout(resolve, 200))
  console.log(JSON.stringify({
    event: 'paid',
    sent: conn.totalSent,
    delivered: conn.totalDelivered,
    received: received.toString(),
    senderAsset: { code: conn.sourceAssetCode, scale: conn.sourceAssetScale },
    receiverAsset: { code: conn.destinationAssetCode, scale: conn.destinationAssetScale }
  }))
  await conn.end()
  await senderPlugin.disconnect()
  await receiverPlugin.disconnect()
  process.exit(0)
}

main().catch((err) => {
  console.log(JSON.stringify({ event: 'failed', error: String(err && err.stack || err) }))
  process.exit(1)
})
