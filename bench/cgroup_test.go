package bench

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The servers' CPU is measured with cgroups where the benchmark may make
// them: every daemon starts in a cgroup (v2) of its own, and the CPU of a
// server is its cgroup's usage_usec, which counts every process that ever
// ran in it (threads, children, and children reparented away from their
// parents, or never waited for). The /proc tree (utime+stime of the live
// processes, cutime+cstime of the ones they reaped) misses the CPU of
// processes their parent never waited for: fcgiwrap's git-http-backend
// children, and the git processes of an OpenSSH session whose user is not
// root. Without cgroups (not root, or no cgroup2 mount) the benchmarks fall
// back to the /proc tree and say so on stderr.

// cpuGroup is a daemon's cgroup.
type cpuGroup struct {
	dir string
}

var (
	cgroupOnce sync.Once
	cgroupBase string // where the benchmark makes its cgroups; "" if it cannot
	cgroupSeq  int
	cgroupMu   sync.Mutex
	// cgroupOf maps a daemon's pid to its cgroup, for treeCPU.
	cgroupOf = map[int]*cpuGroup{}
)

// cgroupRoot finds the cgroup2 directory of this process and checks that a
// child cgroup can be made in it.
func cgroupRoot() string {
	cgroupOnce.Do(func() {
		mount := cgroup2Mount()
		self, err := os.ReadFile("/proc/self/cgroup")
		if mount == "" || err != nil {
			fmt.Fprintln(os.Stderr, "bench: no cgroup2 mount: server CPU from the /proc tree (misses children never waited for)")
			return
		}
		var path string
		for _, line := range strings.Split(string(self), "\n") {
			if rest, ok := strings.CutPrefix(line, "0::"); ok {
				path = rest
			}
		}
		base := filepath.Join(mount, path)
		probe := filepath.Join(base, fmt.Sprintf("gitgate-bench-probe-%d", os.Getpid()))
		if err := os.Mkdir(probe, 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "bench: cannot make a cgroup (%v): server CPU from the /proc tree (misses children never waited for)\n", err)
			return
		}
		os.Remove(probe)
		cgroupBase = base
	})
	return cgroupBase
}

// cgroup2Mount is the mount point of the cgroup2 hierarchy ("" if none).
func cgroup2Mount() string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ... mountpoint ... - fstype source options
		fields := strings.Fields(sc.Text())
		for i, field := range fields {
			if field == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return fields[4]
			}
		}
	}
	return ""
}

// newCPUGroup makes a cgroup for a daemon called name, or returns nil.
func newCPUGroup(name string) *cpuGroup {
	base := cgroupRoot()
	if base == "" {
		return nil
	}
	cgroupMu.Lock()
	cgroupSeq++
	dir := filepath.Join(base, fmt.Sprintf("gitgate-bench-%d-%d-%s", os.Getpid(), cgroupSeq, name))
	cgroupMu.Unlock()
	if err := os.Mkdir(dir, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "bench: cgroup for %s: %v: its CPU from the /proc tree\n", name, err)
		return nil
	}
	return &cpuGroup{dir: dir}
}

// enter moves the process pid into the group and registers it for treeCPU.
func (g *cpuGroup) enter(pid int) error {
	if err := os.WriteFile(filepath.Join(g.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return err
	}
	cgroupMu.Lock()
	cgroupOf[pid] = g
	cgroupMu.Unlock()
	return nil
}

// usage is the CPU time every process of the group has used.
func (g *cpuGroup) usage() (time.Duration, error) {
	data, err := os.ReadFile(filepath.Join(g.dir, "cpu.stat"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			us, err := strconv.ParseInt(v, 10, 64)
			return time.Duration(us) * time.Microsecond, err
		}
	}
	return 0, errors.New("cpu.stat has no usage_usec")
}

// remove kills what is left in the group and removes it, within a bound.
func (g *cpuGroup) remove(pid int) {
	cgroupMu.Lock()
	delete(cgroupOf, pid)
	cgroupMu.Unlock()
	os.WriteFile(filepath.Join(g.dir, "cgroup.kill"), []byte("1"), 0o644)
	for range 100 { // up to 5 s for the kernel to empty it
		if err := os.Remove(g.dir); err == nil || !errors.Is(err, syscall.EBUSY) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "bench: cgroup %s left behind\n", g.dir)
}

// groupCPU is the CPU of the daemon pid's cgroup, if it has one.
func groupCPU(pid int) (time.Duration, bool) {
	cgroupMu.Lock()
	g := cgroupOf[pid]
	cgroupMu.Unlock()
	if g == nil {
		return 0, false
	}
	d, err := g.usage()
	return d, err == nil
}
