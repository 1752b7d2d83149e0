#!/usr/bin/env node
// Scenario driver for kafkajs 2.2.4 (npm), see ../README.md.
//
// kafkajs has two limits the scenarios meet. It has no manual assignment: `consume` joins a
// fresh group of its own, commits nothing, and seeks each partition to its start (earliest,
// or the offset ListOffsets gives for the timestamp). Its compression is gzip built in and
// snappy through the kafkajs-snappy codec; its lz4 and zstd codecs are native add-ons that
// do not build on current Node, so they are not in the matrix.
'use strict'

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'

const { Kafka, CompressionTypes, CompressionCodecs, ConfigResourceTypes, logLevel } = require('kafkajs')
CompressionCodecs[CompressionTypes.Snappy] = require('kafkajs-snappy')

const CODECS = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP, snappy: CompressionTypes.Snappy }
const EXIT = { ok: 0, error: 1, usage: 2, timeout: 3 }
const CHUNK = 100 // records per send(): one request, a batch per partition

class Timeout extends Error {}

function emit (event, fields = {}) {
  const sorted = Object.fromEntries(Object.entries({ event, ...fields }).sort(([a], [b]) => a < b ? -1 : 1))
  process.stdout.write(JSON.stringify(sorted) + '\n')
}

function parse (argv) {
  const args = { scenario: argv[0], count: 0, codec: 'none', prefix: 'v', rate: 0, start: 'earliest', group: '', sessionTimeoutMs: 6000, partitions: 1, replicationFactor: 1, addPartitions: 0, config: {}, alter: {}, timeoutMs: 60000 }
  const names = { '--bootstrap': 'bootstrap', '--topic': 'topic', '--count': 'count', '--codec': 'codec', '--prefix': 'prefix', '--rate': 'rate', '--start': 'start', '--group': 'group', '--session-timeout-ms': 'sessionTimeoutMs', '--partitions': 'partitions', '--replication-factor': 'replicationFactor', '--add-partitions': 'addPartitions', '--timeout-ms': 'timeoutMs' }
  for (let i = 1; i < argv.length; i += 2) {
    const flag = argv[i]
    const value = argv[i + 1]
    if (value === undefined) throw new Error(`${flag} needs a value`)
    if (flag === '--config' || flag === '--alter') {
      const eq = value.indexOf('=')
      if (eq < 1) throw new Error(`${flag} expects KEY=VALUE, got ${value}`)
      args[flag.slice(2)][value.slice(0, eq)] = value.slice(eq + 1)
    } else if (names[flag]) {
      const name = names[flag]
      args[name] = typeof args[name] === 'number' ? Number(value) : value
    } else {
      throw new Error(`unknown option ${flag}`)
    }
  }
  if (!args.bootstrap || !args.topic) throw new Error('--bootstrap and --topic are required')
  args.deadline = Date.now() + args.timeoutMs
  return args
}

function remainingMs (args) { return Math.max(0, args.deadline - Date.now()) }

function checkDeadline (args) {
  if (Date.now() >= args.deadline) throw new Timeout(`${args.scenario} did not finish within ${args.timeoutMs} ms`)
}

// kafkajs logs through console.log (stdout) by default: its lines go to stderr instead.
function kafka (args) {
  return new Kafka({
    clientId: 'strata-compat',
    brokers: args.bootstrap.split(','),
    logLevel: logLevel.WARN,
    logCreator: () => ({ level, log }) => process.stderr.write(`[kafkajs ${level}] ${log.message}\n`)
  })
}

const text = (buf) => (buf === null || buf === undefined) ? null : buf.toString('utf8')

async function partitionCount (admin, args) {
  const meta = await admin.fetchTopicMetadata({ topics: [args.topic] })
  return meta.topics[0].partitions.length
}

async function produce (args) {
  if (!(args.codec in CODECS)) throw new Error(`kafkajs has no ${args.codec} codec here`)
  const client = kafka(args)
  const admin = client.admin()
  const producer = client.producer({ idempotent: true, maxInFlightRequests: 1 })
  await admin.connect()
  await producer.connect()
  try {
    // Explicit partitions (i mod P), so that each record's offset follows from the batch's
    // base offset: kafkajs answers a send() with one base offset per partition.
    const partitions = await partitionCount(admin, args)
    const pauseMs = args.rate > 0 ? 1000 / args.rate : 0
    let acked = 0
    for (let first = 0; first < args.count; first += CHUNK) {
      checkDeadline(args)
      const messages = []
      for (let i = first; i < Math.min(args.count, first + CHUNK); i++) {
        if (pauseMs) await new Promise(resolve => setTimeout(resolve, pauseMs))
        messages.push({ key: `k-${i}`, value: `${args.prefix}-${i}`, partition: i % partitions })
      }
      const results = await producer.send({ topic: args.topic, acks: -1, compression: CODECS[args.codec], messages })
      const next = new Map(results.map(r => [r.partition, BigInt(r.baseOffset)]))
      for (const m of messages) {
        const offset = next.get(m.partition)
        next.set(m.partition, offset + 1n)
        emit('ack', { partition: m.partition, offset: Number(offset), key: m.key, value: m.value })
        acked++
      }
    }
    emit('done', { count: acked })
  } finally {
    await producer.disconnect()
    await admin.disconnect()
  }
}

async function startOffsets (admin, args) {
  if (args.start === 'earliest') {
    return (await admin.fetchTopicOffsets(args.topic)).map(p => ({ partition: p.partition, offset: p.low }))
  }
  return admin.fetchTopicOffsetsByTimestamp(args.topic, Number(args.start))
}

async function consume (args) {
  const client = kafka(args)
  const admin = client.admin()
  await admin.connect()
  const consumer = client.consumer({ groupId: `assign-${args.topic}-${process.pid}-${Date.now()}` })
  try {
    const starts = await startOffsets(admin, args)
    await consumer.connect()
    await consumer.subscribe({ topics: [args.topic], fromBeginning: true })
    let seen = 0
    let resolveDone
    const done = new Promise(resolve => { resolveDone = resolve })
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        if (seen >= args.count) return
        emit('record', { partition, offset: Number(message.offset), key: text(message.key), value: text(message.value), timestamp: Number(message.timestamp) })
        if (++seen === args.count) resolveDone()
      }
    })
    for (const { partition, offset } of starts) consumer.seek({ topic: args.topic, partition, offset: String(offset) })
    if (args.count === 0) resolveDone()
    await withDeadline(done, args)
    emit('done', { count: seen })
  } finally {
    await consumer.disconnect()
    await admin.disconnect()
  }
}

function withDeadline (promise, args) {
  let timer
  const expired = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Timeout(`${args.scenario} did not finish within ${args.timeoutMs} ms`)), remainingMs(args))
  })
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer))
}

async function group (args) {
  const client = kafka(args)
  const consumer = client.consumer({ groupId: args.group, sessionTimeout: args.sessionTimeoutMs, heartbeatInterval: Math.max(100, Math.floor(args.sessionTimeoutMs / 6)) })
  consumer.on(consumer.events.GROUP_JOIN, (e) => emit('assigned', { partitions: [...(e.payload.memberAssignment[args.topic] || [])].sort((a, b) => a - b) }))
  let resolveStop
  const stopped = new Promise(resolve => { resolveStop = resolve })
  process.on('SIGTERM', () => resolveStop())
  await consumer.connect()
  try {
    await consumer.subscribe({ topics: [args.topic], fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch, heartbeat }) => {
        if (batch.messages.length === 0) return
        for (const m of batch.messages) {
          emit('record', { partition: batch.partition, offset: Number(m.offset), key: text(m.key), value: text(m.value), timestamp: Number(m.timestamp) })
        }
        const next = Number(batch.messages[batch.messages.length - 1].offset) + 1
        await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: String(next) }])
        emit('committed', { offsets: { [String(batch.partition)]: next } })
        await heartbeat()
      }
    })
    await withDeadline(stopped, args)
  } finally {
    await consumer.disconnect() // leaves the group
  }
}

// Prints the partition count and the configs read back once they show what the scenario did:
// Kafka's brokers learn a change a moment after it is acknowledged, each on its own.
async function describe (admin, args, step, partitions, want) {
  const keys = [...new Set([...Object.keys(args.config), ...Object.keys(args.alter)])].sort()
  while (true) {
    let resources
    try {
      ({ resources } = await admin.describeConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: args.topic }], includeSynonyms: false }))
    } catch (err) {
      if (err.type !== 'UNKNOWN_TOPIC_OR_PARTITION') throw err
      checkDeadline(args) // a broker that has not heard of the new topic yet
      continue
    }
    const configs = Object.fromEntries(resources[0].configEntries.map(e => [e.configName, e.configValue]))
    const picked = Object.fromEntries(keys.filter(k => k in configs).map(k => [k, configs[k]]))
    const count = await partitionCount(admin, args)
    if (count >= partitions && Object.entries(want).every(([k, v]) => picked[k] === v)) {
      emit('step', { step, partitions: count, configs: picked })
      return
    }
    checkDeadline(args)
  }
}

async function admin (args) {
  const admin = kafka(args).admin()
  await admin.connect()
  const altered = { ...args.config, ...args.alter }
  try {
    const entries = (obj) => Object.entries(obj).map(([name, value]) => ({ name, value }))
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic: args.topic, numPartitions: args.partitions, replicationFactor: args.replicationFactor, configEntries: entries(args.config) }] })
    emit('step', { step: 'create' })
    await describe(admin, args, 'describe', args.partitions, args.config)
    // AlterConfigs (kafkajs has no incremental variant) replaces the whole set: send the kept ones too.
    await admin.alterConfigs({ validateOnly: false, resources: [{ type: ConfigResourceTypes.TOPIC, name: args.topic, configEntries: entries(altered) }] })
    emit('step', { step: 'alter' })
    await describe(admin, args, 'describe-after-alter', args.partitions, altered)
    await admin.createPartitions({ topicPartitions: [{ topic: args.topic, count: args.addPartitions }] })
    emit('step', { step: 'add-partitions' })
    await describe(admin, args, 'describe-after-add', args.addPartitions, altered)
  } finally {
    await admin.disconnect()
  }
}

async function deleteTopic (args) {
  const admin = kafka(args).admin()
  await admin.connect()
  try {
    await admin.deleteTopics({ topics: [args.topic] })
    while ((await admin.listTopics()).includes(args.topic)) checkDeadline(args)
    emit('step', { step: 'delete' })
  } finally {
    await admin.disconnect()
  }
}

const SCENARIOS = { produce, consume, group, admin, delete: deleteTopic }

async function main () {
  let args
  try {
    args = parse(process.argv.slice(2))
  } catch (err) {
    process.stderr.write(`driver.js: ${err.message}\n`)
    return EXIT.usage
  }
  const run = SCENARIOS[args.scenario]
  if (!run) {
    process.stderr.write(`driver.js: scenario ${args.scenario} is not available for kafkajs\n`)
    return EXIT.usage
  }
  try {
    await withDeadline(run(args), args)
    return EXIT.ok
  } catch (err) {
    if (err instanceof Timeout) {
      emit('timeout', { message: err.message })
      return EXIT.timeout
    }
    emit('error', { message: `${err.name}: ${err.message}` })
    return EXIT.error
  }
}

main().then(code => process.exit(code))
