// Command franz is the scenario driver for franz-go (kgo, kadm); see ../../README.md.
//
// franz-go produces idempotently unless told not to, negotiates every request version
// down to what the broker advertises, and balances groups cooperatively by default
// (cooperative-sticky): a rebalance hands a member only its added and removed
// partitions, so the driver keeps the whole assignment itself.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"strata/compat/clients/internal/cli"
)

var codecs = map[string]kgo.CompressionCodec{
	"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
	"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
}

func produce(ctx context.Context, args *cli.Args) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(args.Bootstrap...), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(codecs[args.Codec]), kgo.DefaultProduceTopic(args.Topic))
	if err != nil {
		return err
	}
	defer cl.Close()
	pacer := cli.NewPacer(args.Rate)
	results := make([]*kgo.Record, args.Count)
	errs := make([]error, args.Count)
	var wg sync.WaitGroup
	for i := 0; i < args.Count; i++ {
		if err := pacer.Wait(ctx); err != nil {
			return err
		}
		wg.Add(1)
		rec := &kgo.Record{Key: []byte(cli.Key(i)), Value: []byte(cli.Value(args.Prefix, i))}
		cl.Produce(ctx, rec, func(r *kgo.Record, err error) {
			results[i], errs[i] = r, err
			wg.Done()
		})
	}
	wg.Wait()
	for i, r := range results {
		if errs[i] != nil {
			return fmt.Errorf("record %d: %w", i, errs[i])
		}
		cli.Emit("ack", map[string]any{"partition": r.Partition, "offset": r.Offset,
			"key": string(r.Key), "value": string(r.Value)})
	}
	cli.Emit("done", map[string]any{"count": args.Count})
	return nil
}

func partitionIDs(ctx context.Context, adm *kadm.Client, topic string) ([]int32, error) {
	for {
		details, err := adm.ListTopics(ctx, topic)
		if err == nil && details.Has(topic) && details[topic].Err == nil {
			ids := details[topic].Partitions.Numbers()
			if len(ids) > 0 {
				sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
				return ids, nil
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

func consume(ctx context.Context, args *cli.Args) error {
	admCl, err := kgo.NewClient(kgo.SeedBrokers(args.Bootstrap...))
	if err != nil {
		return err
	}
	defer admCl.Close()
	ids, err := partitionIDs(ctx, kadm.NewClient(admCl), args.Topic)
	if err != nil {
		return err
	}
	start := kgo.NewOffset().AtStart()
	if ts := args.StartTimestamp(); ts >= 0 {
		start = kgo.NewOffset().AfterMilli(ts)
	}
	offsets := map[int32]kgo.Offset{}
	for _, p := range ids {
		offsets[p] = start
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(args.Bootstrap...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{args.Topic: offsets}))
	if err != nil {
		return err
	}
	defer cl.Close()
	seen := 0
	for seen < args.Count {
		fetches := cl.PollRecords(ctx, args.Count-seen)
		if err := ctx.Err(); err != nil {
			return err
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			return fmt.Errorf("fetch %s[%d]: %w", errs[0].Topic, errs[0].Partition, errs[0].Err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			cli.Record(r.Partition, r.Offset, r.Key, r.Value, r.Timestamp)
			seen++
		})
	}
	cli.Emit("done", map[string]any{"count": seen})
	return nil
}

// assignment is a member's current partitions, kept from the cooperative callbacks.
type assignment struct {
	mu    sync.Mutex
	owned map[int32]bool
}

func (a *assignment) change(topic string, parts map[string][]int32, add bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range parts[topic] {
		if add {
			a.owned[p] = true
		} else {
			delete(a.owned, p)
		}
	}
	if add {
		all := make([]int32, 0, len(a.owned))
		for p := range a.owned {
			all = append(all, p)
		}
		cli.Assigned(all)
	}
}

func group(ctx context.Context, args *cli.Args) error {
	owned := &assignment{owned: map[int32]bool{}}
	cl, err := kgo.NewClient(kgo.SeedBrokers(args.Bootstrap...), kgo.ConsumerGroup(args.Group),
		kgo.ConsumeTopics(args.Topic), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(args.SessionTimeout), kgo.HeartbeatInterval(args.SessionTimeout/6),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, p map[string][]int32) {
			owned.change(args.Topic, p, true)
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, c *kgo.Client, p map[string][]int32) {
			// Commit what was processed before the partitions go to another member.
			_ = c.CommitUncommittedOffsets(ctx)
			owned.change(args.Topic, p, false)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, p map[string][]int32) {
			owned.change(args.Topic, p, false)
		}))
	if err != nil {
		return err
	}
	defer cl.Close() // leaves the group
	pollCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-args.Stop:
			cancel()
		case <-pollCtx.Done():
		}
	}()
	for {
		fetches := cl.PollFetches(pollCtx)
		select {
		case <-args.Stop:
			return nil
		default:
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, fe := range fetches.Errors() {
			if !errors.Is(fe.Err, context.Canceled) {
				return fmt.Errorf("fetch %s[%d]: %w", fe.Topic, fe.Partition, fe.Err)
			}
		}
		records := fetches.Records()
		if len(records) == 0 {
			continue
		}
		done := map[int32]int64{}
		for _, r := range records {
			cli.Record(r.Partition, r.Offset, r.Key, r.Value, r.Timestamp)
			done[r.Partition] = r.Offset + 1
		}
		if err := cl.CommitRecords(ctx, records...); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		cli.Committed(done)
	}
}

// describe emits the partition count and the configs read back once they show what the
// scenario did: Kafka's brokers learn a change a moment after its ack, each on its own.
func describe(ctx context.Context, adm *kadm.Client, args *cli.Args, step string, partitions int, want map[string]string) error {
	for {
		rcs, err := adm.DescribeTopicConfigs(ctx, args.Topic)
		if err != nil {
			return err
		}
		rc, err := rcs.On(args.Topic, nil)
		if err != nil {
			return err
		}
		if errors.Is(rc.Err, kerr.UnknownTopicOrPartition) && ctx.Err() == nil {
			continue // a broker that has not heard of the new topic yet
		}
		if rc.Err != nil {
			return rc.Err
		}
		values := map[string]string{}
		for _, c := range rc.Configs {
			if c.Value != nil {
				values[c.Key] = *c.Value
			}
		}
		picked := cli.Pick(values, args.Keys())
		ids, err := partitionIDs(ctx, adm, args.Topic)
		if err != nil {
			return err
		}
		if len(ids) >= partitions && cli.Shows(picked, want) {
			cli.Emit("step", map[string]any{"step": step, "partitions": len(ids), "configs": picked})
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

func admin(ctx context.Context, args *cli.Args) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(args.Bootstrap...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	configs := map[string]*string{}
	for k, v := range args.Config {
		configs[k] = &v
	}
	created, err := adm.CreateTopic(ctx, int32(args.Partitions), int16(args.ReplicationFactor), configs, args.Topic)
	if err == nil {
		err = created.Err
	}
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if _, err := waitPartitions(ctx, adm, args.Topic, args.Partitions); err != nil {
		return err
	}
	cli.Emit("step", map[string]any{"step": "create"})
	if err := describe(ctx, adm, args, "describe", args.Partitions, args.Config); err != nil {
		return err
	}
	alters := []kadm.AlterConfig{}
	for k, v := range args.Alter {
		alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: &v})
	}
	altered, err := adm.AlterTopicConfigs(ctx, alters, args.Topic)
	if err == nil {
		_, err = altered.On(args.Topic, nil)
		for _, r := range altered {
			if r.Err != nil {
				err = r.Err
			}
		}
	}
	if err != nil {
		return fmt.Errorf("alter: %w", err)
	}
	cli.Emit("step", map[string]any{"step": "alter"})
	if err := describe(ctx, adm, args, "describe-after-alter", args.Partitions, args.Config.Merged(args.Alter)); err != nil {
		return err
	}
	updated, err := adm.UpdatePartitions(ctx, args.AddPartitions, args.Topic)
	if err == nil {
		for _, r := range updated {
			if r.Err != nil {
				err = r.Err
			}
		}
	}
	if err != nil {
		return fmt.Errorf("add partitions: %w", err)
	}
	cli.Emit("step", map[string]any{"step": "add-partitions"})
	return describe(ctx, adm, args, "describe-after-add", args.AddPartitions, args.Config.Merged(args.Alter))
}

func waitPartitions(ctx context.Context, adm *kadm.Client, topic string, n int) ([]int32, error) {
	for {
		ids, err := partitionIDs(ctx, adm, topic)
		if err != nil || len(ids) >= n {
			return ids, err
		}
	}
}

func deleteTopic(ctx context.Context, args *cli.Args) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(args.Bootstrap...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	resp, err := adm.DeleteTopic(ctx, args.Topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	for {
		details, err := adm.ListTopics(ctx, args.Topic)
		if err == nil && !details.Has(args.Topic) {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	cli.Emit("step", map[string]any{"step": "delete"})
	return nil
}

func main() {
	os.Exit(cli.Main("franz", map[string]cli.Scenario{
		"produce": produce, "consume": consume, "group": group, "admin": admin, "delete": deleteTopic,
	}))
}
