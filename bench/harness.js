#!/usr/bin/env node
// Benchmark harness: one sender and one receiver (both the real ilp-plugin-btp@1.5.0) in one
// process, connected to the connector under test. Keeps N Prepares in flight for a fixed time,
// checks every Fulfill against the preimage of its condition, and prints one JSON line per level.
//
//   node bench/harness.js --sender btp+ws://... --receiver btp+ws://... --destination ADDR
//                         --levels 1,10,100 --seconds 5 --warmup 1
'use strict'
const crypto = require('crypto')
const path = require('path')
const req = (m) => require(path.join(__dirname, '..', 'interop', 'node_modules', m))
const BtpPlugin = req('ilp-plugin-btp')
const IlpPacket = req('ilp-packet')

const args = process.argv.slice(2)
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : def }

async function main () {
  const sender = new BtpPlugin({ server: opt('--sender'), responseTimeout: 60000 })
  const receiver = new BtpPlugin({ server: opt('--receiver'), responseTimeout: 60000 })
  receiver.registerDataHandler(async (data) => {
    const prepare = IlpPacket.deserializeIlpPrepare(data)
    const fulfillment = crypto.createHash('sha256').update(prepare.data).digest()
    return IlpPacket.serializeIlpFulfill({ fulfillment, data: Buffer.alloc(0) })
  })
  await receiver.connect()
  await sender.connect()
  const destination = opt('--destination')
  const seconds = Number(opt('--seconds', '5'))
  const warmup = Number(opt('--warmup', '1'))
  for (const level of opt('--levels', '1,10,100').split(',').map(Number)) {
    const result = await run(sender, destination, level, warmup, seconds, Number(opt('--total', '0')))
    console.log(JSON.stringify({ event: 'level', inFlight: level, ...result }))
  }
  console.log(JSON.stringify({ event: 'done' }))
  await sender.disconnect()
  await receiver.disconnect()
  process.exit(0)
}

// Payments drawn from a pool made up front: the harness spends its CPU on the connector under
// test, not on random bytes and hashes, so it saturates later. Each Fulfill is still checked:
// its fulfillment must be the preimage made for that condition (sha256 is collision resistant).
const POOL = Array.from({ length: 4096 }, () => {
  const data = crypto.randomBytes(32)
  const fulfillment = crypto.createHash('sha256').update(data).digest()
  const condition = crypto.createHash('sha256').update(fulfillment).digest()
  return { data, fulfillment, condition }
})
let next = 0

// --total N: stop after N answers (measured), however long that takes (at most --seconds).
async function run (sender, destination, inFlight, warmup, seconds, total) {
  let measuring = false
  let stop = false
  const latencies = []
  let fulfilled = 0
  let other = 0
  async function worker () {
    while (!stop) {
      const { data, fulfillment, condition } = POOL[next++ % POOL.length]
      const prepare = IlpPacket.serializeIlpPrepare({
        amount: '10', executionCondition: condition, destination, data,
        expiresAt: new Date(Date.now() + 30000)
      })
      const started = process.hrtime.bigint()
      const reply = await sender.sendData(prepare)
      const elapsed = Number(process.hrtime.bigint() - started) / 1e6
      if (!measuring) continue
      const packet = IlpPacket.deserializeIlpPacket(reply)
      const ok = packet.type === IlpPacket.Type.TYPE_ILP_FULFILL &&
        packet.data.fulfillment.equals(fulfillment)
      if (ok) { fulfilled++; if (latencies.length < 1e6) latencies.push(elapsed) } else other++
      if (total && fulfilled + other >= total) stop = true
    }
  }
  const workers = Array.from({ length: inFlight }, worker)
  await new Promise(resolve => setTimeout(resolve, warmup * 1000))
  measuring = true
  process.stdout.write(JSON.stringify({ event: 'measuring', inFlight }) + '\n')
  const t0 = Date.now()
  while (!stop && Date.now() - t0 < seconds * 1000) {
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  measuring = false
  const elapsed = (Date.now() - t0) / 1000
  stop = true
  await Promise.all(workers)
  latencies.sort((a, b) => a - b)
  const pct = (p) => latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] : null
  return { fulfilled, other, seconds: elapsed, packetsPerSecond: fulfilled / elapsed, p50: pct(0.5), p99: pct(0.99) }
}

main().catch(err => { console.error(err); process.exit(1) })
