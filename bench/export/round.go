package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cepcomunicacion/cepjobs/handlers"
)

// roundResult is what one export measured.
type roundResult struct {
	Round int
	Leads int // leads in the database
	Rows  int64
	Bytes int64
	// Wall runs from sending POST /v1/exports to the GET that saw the
	// export completed (GET every 50 ms).
	Wall time.Duration
	// Handler is the "export written" log line's duration: the handler's
	// own time from the first query to the completed upload.
	Handler string
	// KiB. RSSBefore is VmRSS just before the POST; HWM is VmHWM after
	// the round, reset with clear_refs before it (HWMReset says whether
	// that worked); SampledMax is the largest 50 ms VmRSS sample.
	RSSBefore, HWM, SampledMax, RSSAfter int64
	// RssAnon and RssFile after the round: the heap and stacks, and the
	// binary's mapped pages.
	AnonAfter, FileAfter int64
	HWMReset             bool
	Peak                 int64 // max(HWM, SampledMax)
	Samples              int
	CPU                  float64 // worker-stats utime+stime during the round, s
	// Go runtime, from /metrics: allocated during the round, GC cycles,
	// heap figures after it.
	Alloc, GCs                               float64
	HeapSys, HeapInuse, HeapReleased, NextGC float64
	CSVRows                                  int64 // data rows in the downloaded object
	CSVBytes                                 int64
	HeaderOK, BOMOK                          bool
	Series                                   []int64 // VmRSS at each tenth of the round, KiB
}

type exportJSON struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Rows   int64  `json:"rows"`
	Bytes  int64  `json:"bytes"`
	URL    string `json:"url"`
	Error  string `json:"error"`
}

func (b *bench) call(ctx context.Context, method, path string, body []byte, want int) (exportJSON, error) {
	var e exportJSON
	req, err := http.NewRequestWithContext(ctx, method, "http://"+b.api+path, bytes.NewReader(body))
	if err != nil {
		return e, err
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return e, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return e, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	if err := json.Unmarshal(data, &e); err != nil {
		return e, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return e, nil
}

func (b *bench) round(ctx context.Context, r, leads int) (roundResult, error) {
	rd := roundResult{Round: r, Leads: leads}
	pid := b.worker.pid()
	m0, err := goMetrics(ctx, b.metrics)
	if err != nil {
		return rd, err
	}
	if b.pprof != "" {
		b.heapProfile(ctx, fmt.Sprintf("r%d-0-before", r))
	}
	cpu0, err := cpuSeconds(pid)
	if err != nil {
		return rd, err
	}
	rd.HWMReset = resetHWM(pid)
	st, err := status(pid)
	if err != nil {
		return rd, err
	}
	rd.RSSBefore = st["VmRSS"]
	sampler := sampleRSS(pid, 50*time.Millisecond)

	start := time.Now()
	created, err := b.call(ctx, http.MethodPost, "/v1/exports", []byte(`{}`), http.StatusAccepted)
	if err != nil {
		sampler.stop()
		return rd, err
	}
	var (
		e        exportJSON
		deadline = start.Add(15 * time.Minute)
		nextProf = start
		profN    int
	)
	for {
		if e, err = b.call(ctx, http.MethodGet, "/v1/exports/"+created.ID, nil, http.StatusOK); err != nil {
			sampler.stop()
			return rd, err
		}
		if e.Status == "completed" || e.Status == "failed" {
			break
		}
		if time.Now().After(deadline) {
			sampler.stop()
			return rd, fmt.Errorf("export %s still %s after 15 minutes", e.ID, e.Status)
		}
		if b.pprof != "" && time.Now().After(nextProf) {
			profN++
			b.heapProfile(ctx, fmt.Sprintf("r%d-1-during-%02d", r, profN))
			nextProf = time.Now().Add(200 * time.Millisecond)
		}
		select {
		case <-ctx.Done():
			sampler.stop()
			return rd, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	rd.Wall = time.Since(start)
	samples := sampler.stop()
	if e.Status != "completed" {
		return rd, fmt.Errorf("export %s failed: %s", e.ID, e.Error)
	}
	if st, err = status(pid); err != nil {
		return rd, err
	}
	rd.HWM, rd.RSSAfter, rd.AnonAfter, rd.FileAfter = st["VmHWM"], st["VmRSS"], st["RssAnon"], st["RssFile"]
	cpu1, err := cpuSeconds(pid)
	if err != nil {
		return rd, err
	}
	rd.CPU = cpu1 - cpu0
	m1, err := goMetrics(ctx, b.metrics)
	if err != nil {
		return rd, err
	}
	if b.pprof != "" {
		b.heapProfile(ctx, fmt.Sprintf("r%d-2-after", r))
	}
	rd.Alloc = m1["go_memstats_alloc_bytes_total"] - m0["go_memstats_alloc_bytes_total"]
	rd.GCs = m1["go_gc_duration_seconds_count"] - m0["go_gc_duration_seconds_count"]
	rd.HeapSys, rd.HeapInuse, rd.HeapReleased, rd.NextGC = m1["go_memstats_heap_sys_bytes"], m1["go_memstats_heap_inuse_bytes"],
		m1["go_memstats_heap_released_bytes"], m1["go_memstats_next_gc_bytes"]
	rd.Rows, rd.Bytes, rd.Samples = e.Rows, e.Bytes, len(samples)
	for _, s := range samples {
		rd.SampledMax = max(rd.SampledMax, s)
	}
	// VmHWM can trail a sample by a few pages (the kernel folds per-CPU
	// RSS counters into it lazily); the peak is whichever is higher.
	rd.Peak = max(rd.HWM, rd.SampledMax)
	for i := range 10 {
		if len(samples) > 0 {
			rd.Series = append(rd.Series, samples[min(len(samples)-1, (i+1)*len(samples)/10)])
		}
	}
	for _, l := range b.worker.logLines("export written") {
		if l["export_id"] == e.ID {
			rd.Handler, _ = l["duration"].(string)
		}
	}

	// The CSV, through the link the API handed out.
	if err := b.verify(ctx, e.URL, &rd); err != nil {
		return rd, fmt.Errorf("export %s: %w", e.ID, err)
	}
	switch {
	case rd.Rows != int64(leads) || rd.CSVRows != int64(leads):
		return rd, fmt.Errorf("export %s: %d leads in the database, the export says %d rows, the object has %d", e.ID, leads, rd.Rows, rd.CSVRows)
	case rd.CSVBytes != rd.Bytes:
		return rd, fmt.Errorf("export %s: the export says %d bytes, the object has %d", e.ID, rd.Bytes, rd.CSVBytes)
	case !rd.BOMOK || !rd.HeaderOK:
		return rd, fmt.Errorf("export %s: byte order mark ok %v, header ok %v", e.ID, rd.BOMOK, rd.HeaderOK)
	}
	log.Printf("round %d: %d leads, %d rows, %d bytes in %.2f s (handler %s); VmRSS before %d KiB, VmHWM %d KiB (reset %v, sampled max %d), worker CPU %.2f s; Go allocated %.0f MiB in %.0f GCs",
		r, leads, rd.Rows, rd.Bytes, rd.Wall.Seconds(), rd.Handler, rd.RSSBefore, rd.HWM, rd.HWMReset, rd.SampledMax, rd.CPU, rd.Alloc/(1<<20), rd.GCs)
	return rd, nil
}

// verify downloads the object and counts its rows, checking the byte
// order mark and the header.
func (b *bench) verify(ctx context.Context, url string, rd *roundResult) error {
	if url == "" {
		return fmt.Errorf("completed without a link")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("download: %s", resp.Status)
	}
	cr := &countReader{r: resp.Body}
	br := bufio.NewReaderSize(cr, 1<<20)
	bom := make([]byte, 3)
	if _, err := io.ReadFull(br, bom); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	rd.BOMOK = string(bom) == "\uFEFF"
	csvr := csv.NewReader(br)
	csvr.ReuseRecord = true
	header, err := csvr.Read()
	if err != nil {
		return fmt.Errorf("read header: %w", err)
	}
	rd.HeaderOK = slices.Equal(header, b.columns)
	for {
		_, err := csvr.Read() // FieldsPerRecord 0: every row has the header's width
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("csv row %d: %w", rd.CSVRows+1, err)
		}
		rd.CSVRows++
	}
	rd.CSVBytes = cr.n
	return nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// heapProfile saves worker-stats' heap profile (best effort).
func (b *bench) heapProfile(ctx context.Context, name string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.pprof+"/debug/pprof/heap", nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Printf("heap profile %s: %v", name, err)
		return
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	_ = os.WriteFile(filepath.Join(b.o.profile, "heap-"+name+".pb.gz"), data, 0o644)
}

// exportHeader is the header worker-stats writes with the default
// CEPJOBS_EXPORT_COLUMNS.
func exportHeader() []string {
	h, err := handlers.NewExports(handlers.ExportsDeps{})
	if err != nil {
		panic(err)
	}
	return h.Columns()
}
