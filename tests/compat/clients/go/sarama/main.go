// Command sarama is the scenario driver for IBM/sarama; see ../../README.md.
//
// sarama is configured as its users leave it: the default protocol Version (2.8 in this
// release), which sarama >= 1.46 still restricts to what the broker advertises. Its
// idempotent producer needs one request in flight per broker; its group consumer is
// eager (range), so Setup sees the member's whole assignment.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"

	"github.com/IBM/sarama"

	"strata/compat/clients/internal/cli"
)

var codecs = map[string]sarama.CompressionCodec{
	"none": sarama.CompressionNone, "gzip": sarama.CompressionGZIP, "snappy": sarama.CompressionSnappy,
	"lz4": sarama.CompressionLZ4, "zstd": sarama.CompressionZSTD,
}

func config() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.ClientID = "strata-compat"
	return cfg
}

func produce(ctx context.Context, args *cli.Args) error {
	cfg := config()
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Compression = codecs[args.Codec]
	cfg.Net.MaxOpenRequests = 1
	producer, err := sarama.NewAsyncProducer(args.Bootstrap, cfg)
	if err != nil {
		return err
	}
	defer producer.Close()
	// Successes arrive per partition; index them by record so acks print in send order.
	acked := make([]*sarama.ProducerMessage, args.Count)
	failed := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < args.Count; i++ {
			select {
			case msg := <-producer.Successes():
				acked[msg.Metadata.(int)] = msg
			case perr := <-producer.Errors():
				failed <- perr.Err
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		pacer := cli.NewPacer(args.Rate)
		for i := 0; i < args.Count; i++ {
			if pacer.Wait(ctx) != nil {
				return
			}
			msg := &sarama.ProducerMessage{Topic: args.Topic, Key: sarama.StringEncoder(cli.Key(i)),
				Value: sarama.StringEncoder(cli.Value(args.Prefix, i)), Metadata: i}
			select {
			case producer.Input() <- msg:
			case <-ctx.Done():
				return
			}
		}
	}()
	wg.Wait()
	select {
	case err := <-failed:
		return err
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, msg := range acked {
		cli.Emit("ack", map[string]any{"partition": msg.Partition, "offset": msg.Offset,
			"key": cli.Key(i), "value": cli.Value(args.Prefix, i)})
	}
	cli.Emit("done", map[string]any{"count": args.Count})
	return nil
}

func partitionIDs(ctx context.Context, client sarama.Client, topic string) ([]int32, error) {
	for {
		if err := client.RefreshMetadata(topic); err == nil {
			if ids, err := client.Partitions(topic); err == nil && len(ids) > 0 {
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
	client, err := sarama.NewClient(args.Bootstrap, config())
	if err != nil {
		return err
	}
	defer client.Close()
	ids, err := partitionIDs(ctx, client, args.Topic)
	if err != nil {
		return err
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return err
	}
	defer consumer.Close()
	records := make(chan *sarama.ConsumerMessage)
	errs := make(chan error, len(ids))
	for _, p := range ids {
		start := sarama.OffsetOldest
		if ts := args.StartTimestamp(); ts >= 0 {
			if start, err = client.GetOffset(args.Topic, p, ts); err != nil {
				return err
			}
			if start < 0 { // no record at or after the time: start at the end
				start = sarama.OffsetNewest
			}
		}
		pc, err := consumer.ConsumePartition(args.Topic, p, start)
		if err != nil {
			return fmt.Errorf("partition %d: %w", p, err)
		}
		defer pc.Close()
		go func() {
			for {
				select {
				case msg, ok := <-pc.Messages():
					if !ok {
						return
					}
					select {
					case records <- msg:
					case <-ctx.Done():
						return
					}
				case cerr, ok := <-pc.Errors():
					if ok {
						errs <- cerr
					}
					return
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	for seen := 0; seen < args.Count; seen++ {
		select {
		case msg := <-records:
			cli.Record(msg.Partition, msg.Offset, msg.Key, msg.Value, msg.Timestamp)
		case err := <-errs:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	cli.Emit("done", map[string]any{"count": args.Count})
	return nil
}

// member is a sarama ConsumerGroupHandler that prints what it owns, reads and commits.
type member struct{ topic string }

func (m member) Setup(s sarama.ConsumerGroupSession) error {
	cli.Assigned(s.Claims()[m.topic])
	return nil
}

func (m member) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (m member) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			cli.Record(msg.Partition, msg.Offset, msg.Key, msg.Value, msg.Timestamp)
			s.MarkMessage(msg, "")
			// Commit at once when nothing else is buffered: one commit per polled batch.
			if len(claim.Messages()) == 0 {
				s.Commit()
				cli.Committed(map[int32]int64{msg.Partition: msg.Offset + 1})
			}
		case <-s.Context().Done():
			return nil
		}
	}
}

func group(ctx context.Context, args *cli.Args) error {
	cfg := config()
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Consumer.Group.Session.Timeout = args.SessionTimeout
	cfg.Consumer.Group.Heartbeat.Interval = args.SessionTimeout / 6
	cfg.Consumer.Return.Errors = true
	cg, err := sarama.NewConsumerGroup(args.Bootstrap, args.Group, cfg)
	if err != nil {
		return err
	}
	defer cg.Close() // leaves the group
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-args.Stop:
			cancel()
		case <-runCtx.Done():
		}
	}()
	go func() {
		for err := range cg.Errors() {
			fmt.Fprintf(os.Stderr, "sarama group: %v\n", err)
		}
	}()
	for {
		// Consume returns at each rebalance; join again until stopped.
		if err := cg.Consume(runCtx, []string{args.Topic}, member{topic: args.Topic}); err != nil &&
			!errors.Is(err, sarama.ErrClosedConsumerGroup) {
			return err
		}
		select {
		case <-args.Stop:
			return nil
		default:
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// describe emits the partition count and the configs read back once they show what the
// scenario did: Kafka's brokers learn a change a moment after its ack, each on its own.
func describe(ctx context.Context, adm sarama.ClusterAdmin, client sarama.Client, args *cli.Args, step string, partitions int, want map[string]string) error {
	for {
		entries, err := adm.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: args.Topic})
		if errors.Is(err, sarama.ErrUnknownTopicOrPartition) && ctx.Err() == nil {
			continue // a broker that has not heard of the new topic yet
		}
		if err != nil {
			return err
		}
		values := map[string]string{}
		for _, e := range entries {
			values[e.Name] = e.Value
		}
		picked := cli.Pick(values, args.Keys())
		ids, err := partitionIDs(ctx, client, args.Topic)
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

func waitPartitions(ctx context.Context, client sarama.Client, topic string, n int) error {
	for {
		ids, err := partitionIDs(ctx, client, topic)
		if err != nil || len(ids) >= n {
			return err
		}
	}
}

func admin(ctx context.Context, args *cli.Args) error {
	client, err := sarama.NewClient(args.Bootstrap, config())
	if err != nil {
		return err
	}
	defer client.Close()
	adm, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return err
	}
	configs := map[string]*string{}
	for k, v := range args.Config {
		configs[k] = &v
	}
	detail := &sarama.TopicDetail{NumPartitions: int32(args.Partitions),
		ReplicationFactor: int16(args.ReplicationFactor), ConfigEntries: configs}
	if err := adm.CreateTopic(args.Topic, detail, false); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if err := waitPartitions(ctx, client, args.Topic, args.Partitions); err != nil {
		return err
	}
	cli.Emit("step", map[string]any{"step": "create"})
	if err := describe(ctx, adm, client, args, "describe", args.Partitions, args.Config); err != nil {
		return err
	}
	alters := map[string]sarama.IncrementalAlterConfigsEntry{}
	for k, v := range args.Alter {
		alters[k] = sarama.IncrementalAlterConfigsEntry{Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &v}
	}
	if err := adm.IncrementalAlterConfig(sarama.TopicResource, args.Topic, alters, false); err != nil {
		return fmt.Errorf("alter: %w", err)
	}
	cli.Emit("step", map[string]any{"step": "alter"})
	if err := describe(ctx, adm, client, args, "describe-after-alter", args.Partitions, args.Config.Merged(args.Alter)); err != nil {
		return err
	}
	if err := adm.CreatePartitions(args.Topic, int32(args.AddPartitions), nil, false); err != nil {
		return fmt.Errorf("add partitions: %w", err)
	}
	cli.Emit("step", map[string]any{"step": "add-partitions"})
	return describe(ctx, adm, client, args, "describe-after-add", args.AddPartitions, args.Config.Merged(args.Alter))
}

func deleteTopic(ctx context.Context, args *cli.Args) error {
	adm, err := sarama.NewClusterAdmin(args.Bootstrap, config())
	if err != nil {
		return err
	}
	defer adm.Close()
	if err := adm.DeleteTopic(args.Topic); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	for {
		topics, err := adm.ListTopics()
		if err == nil {
			if _, ok := topics[args.Topic]; !ok {
				break
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	cli.Emit("step", map[string]any{"step": "delete"})
	return nil
}

func main() {
	os.Exit(cli.Main("sarama", map[string]cli.Scenario{
		"produce": produce, "consume": consume, "group": group, "admin": admin, "delete": deleteTopic,
	}))
}
