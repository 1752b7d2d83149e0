package main

import (
	"testing"
	"time"
)

func TestPercentileIsNearestRankAndNeverBelowTheTrueValue(t *testing.T) {
	samples := make([]time.Duration, 0, 1000)
	for i := 1000; i >= 1; i-- { // unsorted on purpose: summarize sorts a copy
		samples = append(samples, time.Duration(i)*time.Microsecond)
	}
	got := summarize(samples)
	want := latency{P50: 0.5, P99: 0.99, P999: 0.999, Max: 1.0, Mean: 0.5005}
	if got != want {
		t.Fatalf("summarize = %+v, want %+v", got, want)
	}
	if samples[0] != 1000*time.Microsecond {
		t.Fatalf("summarize reordered the caller's samples")
	}
	one := summarize([]time.Duration{3 * time.Millisecond})
	if one.P50 != 3 || one.P999 != 3 || one.Max != 3 {
		t.Fatalf("one sample: %+v", one)
	}
}

func TestPayloadsDifferAndKeepTheirSize(t *testing.T) {
	gen, err := newPayloads(1024)
	if err != nil {
		t.Fatal(err)
	}
	a, b := gen.next(), gen.next()
	if len(a) != 1024 || len(b) != 1024 {
		t.Fatalf("sizes %d, %d", len(a), len(b))
	}
	if string(a[8:16]) == string(b[8:16]) {
		t.Fatalf("two payloads share a sequence number")
	}
}
