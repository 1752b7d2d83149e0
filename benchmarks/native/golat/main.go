// Command golat measures the latency of one produce in flight, with a Go client.
//
// It publishes records of --size bytes one at a time: send, wait for the
// acknowledgement, send the next. A warm-up (--warmup) comes first and is not
// measured: it covers connecting, metadata, the idempotent producer's id and
// the first round trips through the brokers. Then it measures for --duration
// and prints one JSON object on stdout (after the lines "golat: measuring" and
// "golat: measured", which bracket the measured window) with the measured part's count, rate,
// latency percentiles (ms) and its own CPU seconds.
//
// Two modes:
//
//	kafka      franz-go, acks=all, idempotent (Kafka 4's defaults), linger 0,
//	           to --bootstrap, --topic, partition --partition.
//	jetstream  nats.go's JetStream Publish (waits for the stream's ack), to
//	           --servers, subject --subject (the stream must exist; the
//	           benchmark driver creates it R3).
//
// The benchmark runner (benchmarks/omb/golat.py) builds it with `make golat`
// into build/golat and reads the JSON; it is also usable by hand.
package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"
)

// maxSamples bounds the latencies kept (8 bytes each): at a lone write's rate
// (a few thousand a second) no sane --duration comes near it; a run that does
// stops measuring there and reports the window it actually measured.
const maxSamples = 5_000_000

// The lines printed when the measured window begins and ends; the result's
// JSON line follows the second.
const (
	markMeasuring = "golat: measuring"
	markMeasured  = "golat: measured"
)

// maxErrors is how many failed sends a run tolerates before it gives up: a
// healthy cluster fails none, and a broken one must not spin for --duration.
const maxErrors = 100

// publisher sends one record and returns once it is acknowledged.
type publisher interface {
	publish(ctx context.Context, payload []byte) error
	close()
}

type kafkaPublisher struct {
	client *kgo.Client
	topic  string
	part   int32
}

func newKafka(bootstrap, topic string, partition int32) (*kafkaPublisher, error) {
	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.DefaultProduceTopic(topic),
		// acks=all and idempotence are Kafka 4's producer defaults; franz-go's
		// too, stated here so that a changed default cannot change the figure.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ClientID("golat"),
	)
	if err != nil {
		return nil, err
	}
	return &kafkaPublisher{client: client, topic: topic, part: partition}, nil
}

func (k *kafkaPublisher) publish(ctx context.Context, payload []byte) error {
	rec := &kgo.Record{Topic: k.topic, Partition: k.part, Value: payload}
	return k.client.ProduceSync(ctx, rec).FirstErr()
}

func (k *kafkaPublisher) close() { k.client.Close() }

type jetStreamPublisher struct {
	conn    *nats.Conn
	js      jetstream.JetStream
	subject string
}

func newJetStream(servers, subject string) (*jetStreamPublisher, error) {
	conn, err := nats.Connect(servers, nats.Name("golat"))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &jetStreamPublisher{conn: conn, js: js, subject: subject}, nil
}

func (j *jetStreamPublisher) publish(ctx context.Context, payload []byte) error {
	_, err := j.js.Publish(ctx, j.subject, payload)
	return err
}

func (j *jetStreamPublisher) close() { j.conn.Close() }

// latency is the JSON of the measured part's percentiles, in milliseconds.
type latency struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99.9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

type result struct {
	Mode           string  `json:"mode"`
	Records        int     `json:"records"`
	Errors         int     `json:"errors"`
	Seconds        float64 `json:"seconds"`
	RatePerSecond  float64 `json:"rate"`
	LatencyMs      latency `json:"latency_ms"`
	WarmupRecords  int     `json:"warmup_records"`
	CPUSeconds     float64 `json:"cpu_seconds"`
	MeasuredCPUSec float64 `json:"measured_cpu_seconds"`
	Size           int     `json:"size"`
	Truncated      bool    `json:"truncated"`
}

// percentile is the nearest-rank percentile of sorted durations, in ms: the
// smallest sample with at least p% of the samples at or below it.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	// The epsilon keeps float error (99.9/100*1000 = 999.0000000000001) from
	// moving an exact rank one sample up.
	rank := int(math.Ceil(p/100*float64(len(sorted)) - 1e-9))
	rank = min(max(rank, 1), len(sorted))
	return ms(sorted[rank-1])
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func summarize(samples []time.Duration) latency {
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	var sum time.Duration
	for _, s := range sorted {
		sum += s
	}
	mean := math.NaN()
	if len(sorted) > 0 {
		mean = ms(sum) / float64(len(sorted))
	}
	return latency{
		P50:  percentile(sorted, 50),
		P99:  percentile(sorted, 99),
		P999: percentile(sorted, 99.9),
		Max:  percentile(sorted, 100),
		Mean: mean,
	}
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN()
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// payloads hands out one record after another: random filler (nothing
// compresses), the first 16 bytes the send time and a sequence number so that
// no two records are equal.
type payloads struct {
	buf []byte
	seq uint64
}

func newPayloads(size int) (*payloads, error) {
	buf := make([]byte, size)
	if _, err := rand.Read(buf); err != nil {
		return nil, err
	}
	return &payloads{buf: buf}, nil
}

func (p *payloads) next() []byte {
	p.seq++
	if len(p.buf) >= 16 {
		binary.BigEndian.PutUint64(p.buf[0:8], uint64(time.Now().UnixNano()))
		binary.BigEndian.PutUint64(p.buf[8:16], p.seq)
	}
	// Each send gets its own copy: a client may still hold the last slice.
	return slices.Clone(p.buf)
}

type options struct {
	mode      string
	bootstrap string
	topic     string
	partition int
	servers   string
	subject   string
	size      int
	warmup    time.Duration
	duration  time.Duration
	timeout   time.Duration
}

func run(opts options) (result, error) {
	var pub publisher
	var err error
	switch opts.mode {
	case "kafka":
		if opts.bootstrap == "" || opts.topic == "" {
			return result{}, errors.New("kafka mode needs --bootstrap and --topic")
		}
		pub, err = newKafka(opts.bootstrap, opts.topic, int32(opts.partition))
	case "jetstream":
		if opts.servers == "" || opts.subject == "" {
			return result{}, errors.New("jetstream mode needs --servers and --subject")
		}
		pub, err = newJetStream(opts.servers, opts.subject)
	default:
		return result{}, fmt.Errorf("--mode must be kafka or jetstream, got %q", opts.mode)
	}
	if err != nil {
		return result{}, err
	}
	defer pub.close()
	gen, err := newPayloads(opts.size)
	if err != nil {
		return result{}, err
	}

	send := func() (time.Duration, error) {
		payload := gen.next()
		ctx, cancel := context.WithTimeout(context.Background(), opts.timeout)
		defer cancel()
		start := time.Now()
		err := pub.publish(ctx, payload)
		return time.Since(start), err
	}

	res := result{Mode: opts.mode, Size: opts.size}
	errs := 0
	fail := func(err error) error {
		errs++
		fmt.Fprintf(os.Stderr, "golat: send failed: %v\n", err)
		if errs > maxErrors {
			return fmt.Errorf("more than %d failed sends, last: %w", maxErrors, err)
		}
		return nil
	}

	// Warm-up: at least one acknowledged record, so that connection, metadata
	// and producer id are behind us even with --warmup 0.
	warmEnd := time.Now().Add(opts.warmup)
	for res.WarmupRecords == 0 || time.Now().Before(warmEnd) {
		if _, err := send(); err != nil {
			if ferr := fail(err); ferr != nil {
				return res, ferr
			}
			continue
		}
		res.WarmupRecords++
	}

	// The markers bracket the measured window for whoever reads stdout as it
	// comes (the runner samples the servers' CPU between them).
	fmt.Println(markMeasuring)
	samples := make([]time.Duration, 0, 1<<16)
	cpu0 := cpuSeconds()
	start := time.Now()
	end := start.Add(opts.duration)
	errs = 0
	for time.Now().Before(end) {
		took, err := send()
		if err != nil {
			if ferr := fail(err); ferr != nil {
				return res, ferr
			}
			continue
		}
		samples = append(samples, took)
		if len(samples) >= maxSamples {
			res.Truncated = true
			break
		}
	}
	elapsed := time.Since(start)
	fmt.Println(markMeasured)
	if len(samples) == 0 {
		return res, errors.New("no record was acknowledged in the measured window")
	}
	res.MeasuredCPUSec = cpuSeconds() - cpu0
	res.Records = len(samples)
	res.Errors = errs
	res.Seconds = elapsed.Seconds()
	res.RatePerSecond = float64(len(samples)) / elapsed.Seconds()
	res.LatencyMs = summarize(samples)
	return res, nil
}

func main() {
	var opts options
	flag.StringVar(&opts.mode, "mode", "", "kafka or jetstream")
	flag.StringVar(&opts.bootstrap, "bootstrap", "", "kafka: host:port[,host:port...]")
	flag.StringVar(&opts.topic, "topic", "", "kafka: topic")
	flag.IntVar(&opts.partition, "partition", 0, "kafka: partition")
	flag.StringVar(&opts.servers, "servers", "", "jetstream: nats://host:port[,nats://...]")
	flag.StringVar(&opts.subject, "subject", "", "jetstream: subject of an existing stream")
	flag.IntVar(&opts.size, "size", 1024, "record size in bytes")
	flag.DurationVar(&opts.warmup, "warmup", 2*time.Second, "unmeasured warm-up")
	flag.DurationVar(&opts.duration, "duration", 10*time.Second, "measured duration")
	flag.DurationVar(&opts.timeout, "timeout", 10*time.Second, "one send's acknowledgement timeout")
	flag.Parse()
	if opts.size < 1 || opts.duration <= 0 || opts.warmup < 0 || opts.timeout <= 0 {
		fmt.Fprintln(os.Stderr, "golat: --size, --duration and --timeout must be positive, --warmup >= 0")
		os.Exit(2)
	}

	res, err := run(opts)
	res.CPUSeconds = cpuSeconds()
	if err != nil {
		fmt.Fprintf(os.Stderr, "golat: %v\n", err)
		os.Exit(1)
	}
	out, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintf(os.Stderr, "golat: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}
