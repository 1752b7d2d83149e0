package strata.compat;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

import sun.misc.Signal;

/**
 * Scenario driver for Apache Kafka's Java client, kafka-clients 4.x: the reference client.
 * The command line and the events are tests/compat/clients/README.md's.
 *
 * <p>The client is configured as its users leave it, apart from what a scenario is about
 * (acks, compression, the group's session timeout). A watchdog bounds every run: when
 * --timeout-ms runs out it prints a "timeout" event and halts the JVM with status 3.
 */
public final class Driver {
    private static final Duration POLL = Duration.ofMillis(200);
    private static final int EXIT_OK = 0;
    private static final int EXIT_ERROR = 1;
    private static final int EXIT_USAGE = 2;
    private static final int EXIT_TIMEOUT = 3;

    private final Args args;

    private Driver(Args args) {
        this.args = args;
    }

    // --- command line ----------------------------------------------------------------

    /** The parsed command line; each scenario reads the options it needs. */
    static final class Args {
        String scenario;
        String bootstrap;
        String topic;
        int count;
        String codec = "none";
        String prefix = "v";
        double rate;
        String start = "earliest";
        String group = "";
        int sessionTimeoutMs = 6000;
        int partitions = 1;
        int replicationFactor = 1;
        int addPartitions;
        final Map<String, String> config = new TreeMap<>();
        final Map<String, String> alter = new TreeMap<>();
        long timeoutMs = 60_000;
        long deadlineNanos;

        static Args parse(String[] argv) {
            if (argv.length == 0 || argv[0].startsWith("-")) {
                throw new IllegalArgumentException("usage: Driver SCENARIO --bootstrap H:P --topic T [options]");
            }
            Args a = new Args();
            a.scenario = argv[0];
            for (int i = 1; i < argv.length; i += 2) {
                if (i + 1 >= argv.length) {
                    throw new IllegalArgumentException(argv[i] + " needs a value");
                }
                String v = argv[i + 1];
                switch (argv[i]) {
                    case "--bootstrap" -> a.bootstrap = v;
                    case "--topic" -> a.topic = v;
                    case "--count" -> a.count = Integer.parseInt(v);
                    case "--codec" -> a.codec = v;
                    case "--prefix" -> a.prefix = v;
                    case "--rate" -> a.rate = Double.parseDouble(v);
                    case "--start" -> a.start = v;
                    case "--group" -> a.group = v;
                    case "--session-timeout-ms" -> a.sessionTimeoutMs = Integer.parseInt(v);
                    case "--partitions" -> a.partitions = Integer.parseInt(v);
                    case "--replication-factor" -> a.replicationFactor = Integer.parseInt(v);
                    case "--add-partitions" -> a.addPartitions = Integer.parseInt(v);
                    case "--config" -> putKeyValue(a.config, v);
                    case "--alter" -> putKeyValue(a.alter, v);
                    case "--timeout-ms" -> a.timeoutMs = Long.parseLong(v);
                    default -> throw new IllegalArgumentException("unknown option " + argv[i]);
                }
            }
            if (a.bootstrap == null || a.topic == null) {
                throw new IllegalArgumentException("--bootstrap and --topic are required");
            }
            if (!a.start.equals("earliest")) {
                Long.parseLong(a.start);
            }
            a.deadlineNanos = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(a.timeoutMs);
            return a;
        }

        private static void putKeyValue(Map<String, String> into, String item) {
            int eq = item.indexOf('=');
            if (eq < 1) {
                throw new IllegalArgumentException("expected KEY=VALUE, got " + item);
            }
            into.put(item.substring(0, eq), item.substring(eq + 1));
        }

        long remainingMs() {
            return Math.max(0, TimeUnit.NANOSECONDS.toMillis(deadlineNanos - System.nanoTime()));
        }

        TreeSet<String> keys() {
            TreeSet<String> keys = new TreeSet<>(config.keySet());
            keys.addAll(alter.keySet());
            return keys;
        }
    }

    static String key(int i) {
        return "k-" + i;
    }

    static String value(String prefix, int i) {
        return prefix + "-" + i;
    }

    // --- events ----------------------------------------------------------------------

    /** One event line on stdout; fields in key order, as the other drivers print them. */
    static synchronized void emit(String event, Map<String, Object> fields) {
        TreeMap<String, Object> line = new TreeMap<>(fields);
        line.put("event", event);
        StringBuilder out = new StringBuilder();
        json(out, line);
        System.out.println(out);
        System.out.flush();
    }

    static Map<String, Object> fields(Object... kv) {
        Map<String, Object> m = new HashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            m.put((String) kv[i], kv[i + 1]);
        }
        return m;
    }

    private static void json(StringBuilder out, Object v) {
        if (v == null) {
            out.append("null");
        } else if (v instanceof String s) {
            out.append('"');
            for (char c : s.toCharArray()) {
                switch (c) {
                    case '"' -> out.append("\\\"");
                    case '\\' -> out.append("\\\\");
                    case '\n' -> out.append("\\n");
                    case '\r' -> out.append("\\r");
                    case '\t' -> out.append("\\t");
                    default -> {
                        if (c < 0x20) {
                            out.append(String.format("\\u%04x", (int) c));
                        } else {
                            out.append(c);
                        }
                    }
                }
            }
            out.append('"');
        } else if (v instanceof Number || v instanceof Boolean) {
            out.append(v);
        } else if (v instanceof Map<?, ?> m) {
            out.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : new TreeMap<>(m).entrySet()) {
                if (!first) {
                    out.append(", ");
                }
                first = false;
                json(out, String.valueOf(e.getKey()));
                out.append(": ");
                json(out, e.getValue());
            }
            out.append('}');
        } else if (v instanceof Collection<?> c) {
            out.append('[');
            boolean first = true;
            for (Object o : c) {
                if (!first) {
                    out.append(", ");
                }
                first = false;
                json(out, o);
            }
            out.append(']');
        } else {
            throw new IllegalArgumentException("cannot print " + v.getClass());
        }
    }

    static void record(ConsumerRecord<String, String> r) {
        emit("record", fields("partition", r.partition(), "offset", r.offset(), "key", r.key(),
                "value", r.value(), "timestamp", r.timestamp()));
    }

    // --- scenarios -------------------------------------------------------------------

    void produce() throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args.bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, args.codec);
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        AtomicInteger acked = new AtomicInteger();
        AtomicInteger failed = new AtomicInteger();
        long intervalNanos = args.rate > 0 ? (long) (1e9 / args.rate) : 0;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            long next = System.nanoTime();
            for (int i = 0; i < args.count; i++) {
                if (intervalNanos > 0) {
                    next += intervalNanos;
                    long wait = next - System.nanoTime();
                    if (wait > 0) {
                        TimeUnit.NANOSECONDS.sleep(wait);
                    }
                }
                String k = key(i);
                String v = value(args.prefix, i);
                // Acks print as they arrive: a test acting on progress (a leader kill) reads them live.
                producer.send(new ProducerRecord<>(args.topic, k, v), (meta, err) -> {
                    if (err != null) {
                        failed.incrementAndGet();
                        emit("nack", fields("key", k, "value", v, "message", err.toString()));
                    } else {
                        acked.incrementAndGet();
                        emit("ack", fields("partition", meta.partition(), "offset", meta.offset(), "key", k, "value", v));
                    }
                });
            }
            producer.flush();
        }
        if (failed.get() > 0) {
            throw new IllegalStateException(failed.get() + " of " + args.count + " records were not acknowledged");
        }
        emit("done", fields("count", acked.get()));
    }

    private Properties consumerProps() {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args.bootstrap);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        return p;
    }

    void consume() {
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps())) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo info : consumer.partitionsFor(args.topic, Duration.ofMillis(args.remainingMs()))) {
                tps.add(new TopicPartition(args.topic, info.partition()));
            }
            consumer.assign(tps);
            if (args.start.equals("earliest")) {
                consumer.seekToBeginning(tps);
            } else {
                long ts = Long.parseLong(args.start);
                Map<TopicPartition, Long> query = new HashMap<>();
                tps.forEach(tp -> query.put(tp, ts));
                Map<TopicPartition, OffsetAndTimestamp> found = consumer.offsetsForTimes(query);
                Map<TopicPartition, Long> ends = consumer.endOffsets(tps);
                for (TopicPartition tp : tps) {
                    OffsetAndTimestamp at = found.get(tp);
                    consumer.seek(tp, at != null ? at.offset() : ends.get(tp));
                }
            }
            int seen = 0;
            while (seen < args.count) {
                for (ConsumerRecord<String, String> r : consumer.poll(POLL)) {
                    record(r);
                    seen++;
                }
            }
            emit("done", fields("count", seen));
        }
    }

    void group() throws InterruptedException {
        Properties p = consumerProps();
        p.put(ConsumerConfig.GROUP_ID_CONFIG, args.group);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, String.valueOf(args.sessionTimeoutMs));
        p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, String.valueOf(Math.max(100, args.sessionTimeoutMs / 6)));
        KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p);
        AtomicBoolean stopping = new AtomicBoolean();
        // SIGTERM: wake the poll; the main thread leaves the group and exits 0. (A shutdown
        // hook would not do: the JVM then exits 143 whatever the main thread returns.)
        Signal.handle(new Signal("TERM"), sig -> {
            stopping.set(true);
            consumer.wakeup();
        });
        try {
            consumer.subscribe(List.of(args.topic), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> revoked) {
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> assigned) {
                    List<Integer> all = new ArrayList<>();
                    consumer.assignment().forEach(tp -> all.add(tp.partition()));
                    all.sort(null);
                    emit("assigned", fields("partitions", all));
                }
            });
            while (!stopping.get()) {
                ConsumerRecords<String, String> records = consumer.poll(POLL);
                Map<TopicPartition, OffsetAndMetadata> done = new HashMap<>();
                Map<String, Object> printed = new TreeMap<>();
                for (ConsumerRecord<String, String> r : records) {
                    record(r);
                    done.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    printed.put(String.valueOf(r.partition()), r.offset() + 1);
                }
                if (!done.isEmpty()) {
                    consumer.commitSync(done);
                    emit("committed", fields("offsets", printed));
                }
            }
        } catch (WakeupException e) {
            if (!stopping.get()) {
                throw e;
            }
        } finally {
            consumer.close(); // leaves the group
        }
    }

    private int partitionCount(Admin admin) throws InterruptedException, ExecutionException {
        Map<String, TopicDescription> described = admin.describeTopics(List.of(args.topic)).allTopicNames().get();
        return described.get(args.topic).partitions().size();
    }

    private void waitPartitions(Admin admin, int n) throws InterruptedException, ExecutionException {
        while (true) {
            try {
                if (partitionCount(admin) >= n) {
                    return;
                }
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof UnknownTopicOrPartitionException)) {
                    throw e;
                }
            }
        }
    }

    /**
     * Prints the partition count and the configs read back once they show what the scenario
     * did: Kafka's brokers learn a change a moment after its ack, each on its own.
     */
    private void describe(Admin admin, String step, int partitions, Map<String, String> want) throws InterruptedException, ExecutionException {
        ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, args.topic);
        while (true) {
            Config config;
            int count;
            try {
                config = admin.describeConfigs(List.of(resource)).all().get().get(resource);
                count = partitionCount(admin);
            } catch (ExecutionException e) {
                if (e.getCause() instanceof UnknownTopicOrPartitionException) {
                    continue; // a broker that has not heard of the new topic yet
                }
                throw e;
            }
            Map<String, Object> picked = new TreeMap<>();
            for (String k : args.keys()) {
                ConfigEntry e = config.get(k);
                if (e != null) {
                    picked.put(k, e.value());
                }
            }
            if (count >= partitions && want.entrySet().stream().allMatch(w -> w.getValue().equals(picked.get(w.getKey())))) {
                emit("step", fields("step", step, "partitions", count, "configs", picked));
                return;
            }
        }
    }

    void admin() throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args.bootstrap);
        Map<String, String> altered = new TreeMap<>(args.config);
        altered.putAll(args.alter);
        try (Admin admin = Admin.create(p)) {
            NewTopic topic = new NewTopic(args.topic, args.partitions, (short) args.replicationFactor).configs(args.config);
            admin.createTopics(List.of(topic)).all().get();
            waitPartitions(admin, args.partitions);
            emit("step", fields("step", "create"));
            describe(admin, "describe", args.partitions, args.config);
            List<AlterConfigOp> ops = new ArrayList<>();
            args.alter.forEach((k, v) -> ops.add(new AlterConfigOp(new ConfigEntry(k, v), AlterConfigOp.OpType.SET)));
            ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, args.topic);
            admin.incrementalAlterConfigs(Map.of(resource, ops)).all().get();
            emit("step", fields("step", "alter"));
            describe(admin, "describe-after-alter", args.partitions, altered);
            admin.createPartitions(Map.of(args.topic, NewPartitions.increaseTo(args.addPartitions))).all().get();
            emit("step", fields("step", "add-partitions"));
            describe(admin, "describe-after-add", args.addPartitions, altered);
        }
    }

    void delete() throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args.bootstrap);
        try (Admin admin = Admin.create(p)) {
            admin.deleteTopics(List.of(args.topic)).all().get();
            while (admin.listTopics().names().get().contains(args.topic)) {
                Thread.onSpinWait();
            }
            emit("step", fields("step", "delete"));
        }
    }

    // --- main ------------------------------------------------------------------------

    private void run() throws Exception {
        switch (args.scenario) {
            case "produce" -> produce();
            case "consume" -> consume();
            case "group" -> group();
            case "admin" -> admin();
            case "delete" -> delete();
            default -> throw new IllegalArgumentException("scenario " + args.scenario + " is not available");
        }
    }

    public static void main(String[] argv) {
        Args args;
        try {
            args = Args.parse(argv);
        } catch (RuntimeException e) {
            System.err.println("Driver: " + e.getMessage());
            System.exit(EXIT_USAGE);
            return;
        }
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(args.timeoutMs);
            } catch (InterruptedException e) {
                return;
            }
            emit("timeout", fields("message", args.scenario + " did not finish within " + args.timeoutMs + " ms"));
            Runtime.getRuntime().halt(EXIT_TIMEOUT);
        }, "deadline");
        watchdog.setDaemon(true);
        watchdog.start();
        int code = EXIT_OK;
        try {
            new Driver(args).run();
        } catch (IllegalArgumentException e) {
            System.err.println("Driver: " + e.getMessage());
            code = EXIT_USAGE;
        } catch (Exception e) {
            Throwable cause = e instanceof ExecutionException && e.getCause() != null ? e.getCause() : e;
            emit("error", fields("message", cause.toString()));
            cause.printStackTrace(); // stderr: the test shows its tail when the driver fails
            code = EXIT_ERROR;
        }
        System.exit(code);
    }
}
