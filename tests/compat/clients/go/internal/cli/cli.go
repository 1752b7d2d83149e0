// Package cli is the command line and the output the Go scenario drivers share
// (franz-go and sarama); the contract is tests/compat/clients/README.md.
//
// A driver hands Main one function per scenario. Main parses the uniform command line,
// bounds the run with --timeout-ms through the context it passes, turns SIGTERM into
// Args.Stop (a group member then leaves its group and exits 0), and maps the outcome to
// the exit status the test reads.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	exitOK      = 0
	exitError   = 1
	exitUsage   = 2
	exitTimeout = 3
	// PollTimeout bounds one poll, so the deadline and SIGTERM are noticed promptly.
	PollTimeout = 200 * time.Millisecond
)

// Args is the parsed command line; each scenario reads the options it needs.
type Args struct {
	Scenario          string
	Bootstrap         []string
	Topic             string
	Count             int
	Codec             string
	Prefix            string
	Rate              float64
	Start             string
	Group             string
	SessionTimeout    time.Duration
	Partitions        int
	ReplicationFactor int
	AddPartitions     int
	Config            KeyValues
	Alter             KeyValues
	Timeout           time.Duration
	// Stop is closed by SIGTERM.
	Stop <-chan struct{}
}

// StartTimestamp is the --start timestamp in ms, or -1 for "earliest".
func (a *Args) StartTimestamp() int64 {
	if a.Start == "earliest" {
		return -1
	}
	ts, _ := strconv.ParseInt(a.Start, 10, 64)
	return ts
}

// Keys are the config names the admin scenario reads back: those set and those altered.
func (a *Args) Keys() []string {
	seen := map[string]bool{}
	for k := range a.Config {
		seen[k] = true
	}
	for k := range a.Alter {
		seen[k] = true
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Key and Value of record i.
func Key(i int) string                  { return fmt.Sprintf("k-%d", i) }
func Value(prefix string, i int) string { return fmt.Sprintf("%s-%d", prefix, i) }

// Pick is values restricted to keys (those present).
func Pick(values map[string]string, keys []string) map[string]string {
	picked := map[string]string{}
	for _, k := range keys {
		if v, ok := values[k]; ok {
			picked[k] = v
		}
	}
	return picked
}

// Shows reports whether got holds every entry of want.
func Shows(got map[string]string, want map[string]string) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// KeyValues collects repeated KEY=VALUE options.
type KeyValues map[string]string

func (kv KeyValues) String() string { return fmt.Sprint(map[string]string(kv)) }

func (kv KeyValues) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("expected KEY=VALUE, got %q", s)
	}
	kv[k] = v
	return nil
}

// Merged is kv with the entries of other on top.
func (kv KeyValues) Merged(other KeyValues) map[string]string {
	out := map[string]string{}
	for k, v := range kv {
		out[k] = v
	}
	for k, v := range other {
		out[k] = v
	}
	return out
}

var emitMu sync.Mutex

// Emit prints one event line on stdout (encoding/json sorts map keys).
func Emit(event string, fields map[string]any) {
	line := map[string]any{"event": event}
	for k, v := range fields {
		line[k] = v
	}
	data, err := json.Marshal(line)
	if err != nil {
		panic(err)
	}
	emitMu.Lock()
	defer emitMu.Unlock()
	os.Stdout.Write(append(data, '\n'))
}

// Text is a key or value as the events carry it: UTF-8 text, or nil.
func Text(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

// Record emits one consumed record.
func Record(partition int32, offset int64, key, value []byte, ts time.Time) {
	Emit("record", map[string]any{"partition": partition, "offset": offset, "key": Text(key),
		"value": Text(value), "timestamp": ts.UnixMilli()})
}

// Assigned emits a member's whole current assignment.
func Assigned(partitions []int32) {
	sorted := append([]int32{}, partitions...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	Emit("assigned", map[string]any{"partitions": sorted})
}

// Committed emits the next offset to read per partition, as committed.
func Committed(offsets map[int32]int64) {
	out := map[string]int64{}
	for p, o := range offsets {
		out[strconv.Itoa(int(p))] = o
	}
	Emit("committed", map[string]any{"offsets": out})
}

// Pacer spaces sends 1/rate apart (rate 0: no pacing): a workload's shape.
type Pacer struct {
	interval time.Duration
	next     time.Time
}

func NewPacer(rate float64) *Pacer {
	p := &Pacer{next: time.Now()}
	if rate > 0 {
		p.interval = time.Duration(float64(time.Second) / rate)
	}
	return p
}

func (p *Pacer) Wait(ctx context.Context) error {
	if p.interval == 0 {
		return nil
	}
	p.next = p.next.Add(p.interval)
	select {
	case <-time.After(time.Until(p.next)):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Scenario runs one scenario until it is done, ctx expires or it fails.
type Scenario func(ctx context.Context, args *Args) error

func parse(argv []string) (*Args, error) {
	if len(argv) < 1 || strings.HasPrefix(argv[0], "-") {
		return nil, errors.New("usage: driver SCENARIO --bootstrap H:P --topic T [options]")
	}
	a := &Args{Scenario: argv[0], Config: KeyValues{}, Alter: KeyValues{}}
	fs := flag.NewFlagSet(argv[0], flag.ContinueOnError)
	bootstrap := fs.String("bootstrap", "", "HOST:PORT[,...]")
	fs.StringVar(&a.Topic, "topic", "", "topic")
	fs.IntVar(&a.Count, "count", 0, "records to produce or consume")
	fs.StringVar(&a.Codec, "codec", "none", "none|gzip|snappy|lz4|zstd")
	fs.StringVar(&a.Prefix, "prefix", "v", "value prefix")
	fs.Float64Var(&a.Rate, "rate", 0, "records per second (0: unpaced)")
	fs.StringVar(&a.Start, "start", "earliest", "earliest or a timestamp in ms")
	fs.StringVar(&a.Group, "group", "", "consumer group")
	session := fs.Int("session-timeout-ms", 6000, "group session timeout")
	fs.IntVar(&a.Partitions, "partitions", 1, "partitions to create")
	fs.IntVar(&a.ReplicationFactor, "replication-factor", 1, "replication factor")
	fs.IntVar(&a.AddPartitions, "add-partitions", 0, "partition count after adding")
	fs.Var(a.Config, "config", "KEY=VALUE topic config at creation (repeated)")
	fs.Var(a.Alter, "alter", "KEY=VALUE config to set afterwards (repeated)")
	timeout := fs.Int("timeout-ms", 60000, "bound on the whole run")
	if err := fs.Parse(argv[1:]); err != nil {
		return nil, err
	}
	if *bootstrap == "" || a.Topic == "" {
		return nil, errors.New("--bootstrap and --topic are required")
	}
	if a.Start != "earliest" {
		if _, err := strconv.ParseInt(a.Start, 10, 64); err != nil {
			return nil, errors.New("--start is 'earliest' or a timestamp in ms")
		}
	}
	a.Bootstrap = strings.Split(*bootstrap, ",")
	a.SessionTimeout = time.Duration(*session) * time.Millisecond
	a.Timeout = time.Duration(*timeout) * time.Millisecond
	return a, nil
}

// Main runs the scenario the command line names and returns the exit status.
func Main(prog string, scenarios map[string]Scenario) int {
	args, err := parse(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		return exitUsage
	}
	run, ok := scenarios[args.Scenario]
	if !ok {
		fmt.Fprintf(os.Stderr, "%s: scenario %q is not available for this client\n", prog, args.Scenario)
		return exitUsage
	}
	stop := make(chan struct{})
	args.Stop = stop
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM)
	go func() { <-signals; close(stop) }()

	ctx, cancel := context.WithTimeout(context.Background(), args.Timeout)
	defer cancel()
	err = run(ctx, args)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil:
		Emit("timeout", map[string]any{"message": fmt.Sprintf("%s did not finish within %v: %v", args.Scenario, args.Timeout, err)})
		return exitTimeout
	default:
		Emit("error", map[string]any{"message": err.Error()})
		return exitError
	}
}
