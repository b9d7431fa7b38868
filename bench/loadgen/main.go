// Open-loop HTTP load generator: requests start on a fixed schedule whatever the server
// does (no coordinated omission: latency counts from the scheduled start), bodies cycle
// through a JSON-lines file, one JSON summary on stdout.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"
)

type summary struct {
	Rate     float64     `json:"rate"`
	Duration float64     `json:"duration_s"`
	Sent     int         `json:"sent"`
	OK       int         `json:"ok"`
	Errors   int         `json:"errors"`
	Status   map[int]int `json:"status"`
	P50      float64     `json:"p50_ms"`
	P95      float64     `json:"p95_ms"`
	P99      float64     `json:"p99_ms"`
	Max      float64     `json:"max_ms"`
	Achieved float64     `json:"achieved_rps"`
}

func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted)-1) + 0.5)
	return sorted[i]
}

func main() {
	url := flag.String("url", "", "endpoint to POST to")
	rate := flag.Float64("rate", 1000, "requests per second")
	dur := flag.Duration("duration", 30*time.Second, "how long to send")
	bodies := flag.String("bodies", "", "JSON-lines file of request bodies")
	timeout := flag.Duration("timeout", 5*time.Second, "request timeout")
	token := flag.String("token", "", "bearer API key sent with every request")
	flag.Parse()
	f, err := os.Open(*bodies)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	var payloads [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		payloads = append(payloads, append([]byte(nil), sc.Bytes()...))
	}
	if len(payloads) == 0 {
		fmt.Fprintln(os.Stderr, "error: no bodies")
		os.Exit(1)
	}
	client := &http.Client{Timeout: *timeout, Transport: &http.Transport{
		MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 0, IdleConnTimeout: 90 * time.Second}}
	n := int(*rate * dur.Seconds())
	interval := time.Duration(float64(time.Second) / *rate)
	lat := make([]float64, 0, n)
	status := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func(body []byte, due time.Time) {
			defer wg.Done()
			req, _ := http.NewRequest("POST", *url, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if *token != "" {
				req.Header.Set("Authorization", "Bearer "+*token)
			}
			resp, err := client.Do(req)
			code := 0
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
			}
			ms := float64(time.Since(due).Microseconds()) / 1000.0
			mu.Lock()
			status[code]++
			if code == 200 {
				lat = append(lat, ms)
			}
			mu.Unlock()
		}(payloads[i%len(payloads)], due)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	sort.Float64s(lat)
	s := summary{Rate: *rate, Duration: dur.Seconds(), Sent: n, OK: len(lat), Errors: n - len(lat), Status: status,
		P50: pct(lat, 0.50), P95: pct(lat, 0.95), P99: pct(lat, 0.99), Achieved: float64(len(lat)) / elapsed}
	if len(lat) > 0 {
		s.Max = lat[len(lat)-1]
	}
	json.NewEncoder(os.Stdout).Encode(s)
}
