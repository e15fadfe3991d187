package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// machine describes where a run happened.
type machine struct {
	date      string
	nproc     int
	cpu       string
	goVersion string
	goarch    string
	kernel    string
	memory    string
	loadStart string
	loadEnd   string
}

func describeMachine() machine {
	return machine{
		date:      time.Now().Format("2006-01-02 15:04 MST"),
		nproc:     runtime.NumCPU(),
		cpu:       cpuModel(),
		goVersion: runtime.Version(),
		goarch:    runtime.GOOS + "/" + runtime.GOARCH,
		kernel:    firstLine("/proc/sys/kernel/osrelease"),
		memory:    memTotal(),
		loadStart: loadAverage(),
	}
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotal() string {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	return "unknown"
}

// loadAverage is the 1, 5 and 15 minute load averages: the machine may be
// shared, and a load above its CPU count disturbs the figures.
func loadAverage() string {
	fields := strings.Fields(firstLine("/proc/loadavg"))
	if len(fields) < 3 {
		return "unknown"
	}
	return strings.Join(fields[:3], " ")
}

func firstLine(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(string(data), "\n")
	return strings.TrimSpace(line)
}

// cpuStat is the machine's aggregate CPU time, in clock ticks, from the
// "cpu" line of /proc/stat: what every process used, the load generator
// included, which the per-process times of the servers do not show.
type cpuStat struct {
	busy, total uint64
}

// readCPUStat samples /proc/stat; it fails outside Linux.
func readCPUStat() (cpuStat, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuStat{}, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	return parseCPUStat(line)
}

// parseCPUStat reads "cpu user nice system idle iowait irq softirq steal
// [guest guest_nice]". Guest time is already counted in user and nice,
// so only the first eight fields make the total; idle and iowait are the
// time nothing ran.
func parseCPUStat(line string) (cpuStat, error) {
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return cpuStat{}, fmt.Errorf("unexpected /proc/stat line %q", line)
	}
	var s cpuStat
	var idle uint64
	for i, f := range fields[1:min(len(fields), 9)] {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return cpuStat{}, fmt.Errorf("/proc/stat: %w", err)
		}
		s.total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	s.busy = s.total - idle
	return s, nil
}

// busyMeter sums the machine's CPU time over a phase's rounds, and the
// part of it the benchmark's own processes used; a failed sample (outside
// Linux) makes a figure unknown rather than wrong.
type busyMeter struct {
	busy, total uint64
	unknown     bool
	own         time.Duration
	ownUnknown  bool
}

// around runs f and adds the machine's CPU time spent meanwhile.
func (m *busyMeter) around(f func()) {
	s0, err0 := readCPUStat()
	f()
	s1, err1 := readCPUStat()
	if err0 != nil || err1 != nil || s1.total < s0.total || s1.busy < s0.busy {
		m.unknown = true
		return
	}
	m.busy += s1.busy - s0.busy
	m.total += s1.total - s0.total
}

// addOwn adds the CPU time the benchmark's processes used in a round.
func (m *busyMeter) addOwn(d time.Duration, err error) {
	if err != nil || d < 0 {
		m.ownUnknown = true
		return
	}
	m.own += d
}

// fraction is the busy share of all CPUs' time, or -1 when unknown.
func (m busyMeter) fraction() float64 {
	if m.unknown || m.total == 0 {
		return -1
	}
	return float64(m.busy) / float64(m.total)
}

// ownFraction is the benchmark's own share of all CPUs' time, or -1 when
// unknown. Per-process and machine times are counted differently by the
// kernel, so it may exceed fraction by a little; it is capped there.
func (m busyMeter) ownFraction() float64 {
	f := m.fraction()
	if f < 0 || m.ownUnknown {
		return -1
	}
	all := time.Duration(m.total) * time.Second / clockTick
	return math.Min(f, m.own.Seconds()/all.Seconds())
}
