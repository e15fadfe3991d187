package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bounds of the waits on child processes. They bound a failure; a healthy
// run never comes near them.
const (
	readyTimeout = 60 * time.Second
	stopTimeout  = 10 * time.Second
)

// errExited is a child that stopped before it was told to.
var errExited = errors.New("process exited")

// supervisor starts the child processes of a run and makes sure every one
// of them is gone when the run ends, however it ends.
type supervisor struct {
	mu    sync.Mutex
	procs []*proc
}

// proc is one child process: a server under test or the reference core.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has been reaped
	waitErr error
}

// start runs bin with args and env (added to this process's environment),
// its output going to logPath.
func (s *supervisor) start(name, bin string, args, env []string, logPath string) (*proc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p, nil
}

// stopAll stops every child still running.
func (s *supervisor) stopAll() {
	s.mu.Lock()
	procs := s.procs
	s.procs = nil
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(p.stop)
	}
	wg.Wait()
}

// exited tells whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to end (interrupt, so Caddy closes its store
// cleanly), then kills it if it has not ended within stopTimeout.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
		return
	case <-time.After(stopTimeout):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// failure describes a process that misbehaved, with the end of its log.
func (p *proc) failure(err error) error {
	return fmt.Errorf("%s: %w\n--- last lines of %s ---\n%s", p.name, err, p.logPath, p.logTail(20))
}

// logTail is the last n lines of the process's output.
func (p *proc) logTail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitHTTP waits until url answers any HTTP response: the server is up.
func (p *proc) waitHTTP(ctx context.Context, url string) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return nil
		}
		select {
		case <-p.done:
			return p.failure(errExited)
		case <-ctx.Done():
			if p.exited() {
				return p.failure(errExited)
			}
			if parent.Err() != nil {
				return fmt.Errorf("%s: waiting to serve: %w", p.name, context.Cause(parent))
			}
			return p.failure(fmt.Errorf("not serving %s after %s", url, readyTimeout))
		case <-tick.C:
		}
	}
}

// statusKiB reads a "Vm…: N kB" line of /proc/<pid>/status (Linux).
func (p *proc) statusKiB(field string) (int64, error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(p.cmd.Process.Pid), "status"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, p.cmd.Process.Pid)
}

// peakRSS is the process's resident set high-water mark (VmHWM), in KiB.
func (p *proc) peakRSS() (int64, error) { return p.statusKiB("VmHWM") }

// rss is the process's current resident set (VmRSS), in KiB.
func (p *proc) rss() (int64, error) { return p.statusKiB("VmRSS") }

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times; 100 on every
// Linux architecture Go supports.
const clockTick = 100

// cpuTime is the CPU time (user + system) the process has used so far.
func (p *proc) cpuTime() (time.Duration, error) { return pidCPUTime(p.cmd.Process.Pid) }

// pidCPUTime is the CPU time (user + system) process pid has used so far;
// it fails outside Linux.
func pidCPUTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces; fields after it are
	// counted from the closing parenthesis.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("unreadable /proc stat")
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(fields[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clockTick, nil
}

// ports hands out free loopback ports, never the same one twice in a run:
// the kernel may offer a port again once its probe listener is closed.
type ports struct {
	mu    sync.Mutex
	given map[int]bool
}

func (ps *ports) free() (int, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.given == nil {
		ps.given = map[int]bool{}
	}
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !ps.given[port] {
			ps.given[port] = true
			return port, nil
		}
	}
	return 0, errors.New("no fresh free port after 100 tries")
}
