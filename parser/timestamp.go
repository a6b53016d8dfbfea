package parser

import (
	"errors"
	"fmt"
	"time"
)

// Timestamps. The servers write local wall-clock times in several shapes;
// every parser reads them through wallClock, so that the rules are the same
// for all formats:
//
//   - Fields are validated: no 2026-02-29, no 24:00, no second 60 (a server
//     never writes a leap second: its clock comes from time(2)). time.Date
//     would silently carry them into the next day or month.
//   - A time repeated when the clocks go back (02:30 on the last Sunday of
//     October in Europe/Berlin) is read as its first occurrence, the one
//     before the change, as java.time and Python (fold=0) do. The log alone
//     cannot tell the two apart; a server whose log zone is UTC never has
//     the question.
//   - A time in the hour skipped when the clocks go forward (which a server
//     writing in the configured zone never writes) is read as time.Date
//     reads it: shifted forward by the gap (02:30 → 03:30 CEST).

// daysIn returns the number of days of month m (1-12) in year y.
func daysIn(y int, m time.Month) int {
	if m == time.February {
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	}
	return [...]int{31, 0, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[m-1]
}

// wallClock returns the instant that the wall-clock time y-mo-d h:mi:s.ns
// names in loc, with the rules above.
func wallClock(y, mo, d, h, mi, s, ns int, loc *time.Location) (time.Time, error) {
	if mo < 1 || mo > 12 {
		return time.Time{}, fmt.Errorf("month %d out of range", mo)
	}
	if d < 1 || d > daysIn(y, time.Month(mo)) {
		return time.Time{}, fmt.Errorf("day %d out of range for %04d-%02d", d, y, mo)
	}
	if h > 23 || mi > 59 || s > 59 || h < 0 || mi < 0 || s < 0 {
		return time.Time{}, fmt.Errorf("time %02d:%02d:%02d out of range", h, mi, s)
	}
	t := time.Date(y, time.Month(mo), d, h, mi, s, ns, loc)
	if loc == time.UTC {
		return t, nil
	}
	// Near a change of offset, the same wall clock may name two instants:
	// take the earlier.
	_, off := t.Zone()
	wall := time.Date(y, time.Month(mo), d, h, mi, s, ns, time.UTC)
	for _, probe := range [2]time.Time{t.Add(-3 * time.Hour), t.Add(3 * time.Hour)} {
		_, o := probe.Zone()
		if o == off {
			continue
		}
		c := wall.Add(-time.Duration(o) * time.Second)
		if c.Before(t) && c.In(loc).Hour() == h && c.In(loc).Minute() == mi && c.In(loc).Day() == d {
			t = c.In(loc)
		}
	}
	return t, nil
}

var errStamp = errors.New("not a timestamp")

// localStamp reads the numeric local timestamps the servers write, in loc:
//
//	2006-01-02 15:04:05    audit_login, MySQL Enterprise Audit, Percona (local)
//	2006-01-02  3:04:05    MariaDB's error log (hours below 10 padded with a space)
//	2006-01-02T15:04:05    Percona's audit log (local)
//	20060102 15:04:05      MariaDB server_audit
//	060102 15:04:05        MariaDB general log, MySQL 5.5 error log
//	060102  3:04:05        the same below 10 o'clock
//
// each optionally followed by a fraction of a second (.123456). Two-digit
// years are 20YY.
func localStamp(s string, loc *time.Location) (time.Time, error) {
	i := 0
	num := func(min, max int) (int, bool) {
		n, start := 0, i
		for i < len(s) && i-start < max && s[i] >= '0' && s[i] <= '9' {
			n = n*10 + int(s[i]-'0')
			i++
		}
		return n, i-start >= min
	}
	lit := func(c byte) bool {
		if i < len(s) && s[i] == c {
			i++
			return true
		}
		return false
	}
	var y, mo, d int
	n, ok := num(4, 8)
	switch width := i; {
	case ok && width == 6: // YYMMDD
		y, mo, d = 2000+n/10000, n/100%100, n%100
	case ok && width == 8: // YYYYMMDD
		y, mo, d = n/10000, n/100%100, n%100
	case ok && width == 4 && lit('-'): // YYYY-MM-DD
		y = n
		if mo, ok = num(2, 2); !ok || !lit('-') {
			return time.Time{}, errStamp
		}
		if d, ok = num(2, 2); !ok {
			return time.Time{}, errStamp
		}
	default:
		return time.Time{}, errStamp
	}
	if !lit('T') {
		// One space, or two before a one-digit hour.
		if !lit(' ') {
			return time.Time{}, errStamp
		}
		if lit(' ') && (i+1 >= len(s) || s[i+1] != ':') {
			return time.Time{}, errStamp
		}
	}
	h, ok1 := num(1, 2)
	c1 := lit(':')
	mi, ok2 := num(2, 2)
	c2 := lit(':')
	se, ok3 := num(2, 2)
	if !(ok1 && c1 && ok2 && c2 && ok3) {
		return time.Time{}, errStamp
	}
	ns := 0
	if lit('.') {
		start := i
		frac, ok := num(1, 9)
		if !ok {
			return time.Time{}, errStamp
		}
		for k := i - start; k < 9; k++ {
			frac *= 10
		}
		ns = frac
	}
	if i != len(s) {
		return time.Time{}, errStamp
	}
	return wallClock(y, mo, d, h, mi, se, ns, loc)
}

var months = map[string]time.Month{"Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "May": 5, "Jun": 6,
	"Jul": 7, "Aug": 8, "Sep": 9, "Oct": 10, "Nov": 11, "Dec": 12}

// syslogTime reads a "Jan _2 15:04:05" stamp, which has no year: the year
// that puts it in the past (or at most a day ahead of now). A Feb 29 in a
// year that has none is an error, not Mar 1.
func syslogTime(s string, loc *time.Location, now time.Time) (time.Time, error) {
	if len(s) != 15 || s[3] != ' ' || s[6] != ' ' || s[9] != ':' || s[12] != ':' {
		return time.Time{}, errStamp
	}
	mo, ok := months[s[:3]]
	if !ok {
		return time.Time{}, errStamp
	}
	two := func(a string, spaceOK bool) (int, bool) {
		if spaceOK && a[0] == ' ' {
			a = "0" + a[1:]
		}
		if a[0] < '0' || a[0] > '9' || a[1] < '0' || a[1] > '9' {
			return 0, false
		}
		return int(a[0]-'0')*10 + int(a[1]-'0'), true
	}
	d, ok1 := two(s[4:6], true)
	h, ok2 := two(s[7:9], false)
	mi, ok3 := two(s[10:12], false)
	se, ok4 := two(s[13:15], false)
	if !(ok1 && ok2 && ok3 && ok4) {
		return time.Time{}, errStamp
	}
	year := now.In(loc).Year()
	if time.Date(year, mo, d, h, mi, se, 0, loc).After(now.Add(24 * time.Hour)) {
		year--
	}
	return wallClock(year, int(mo), d, h, mi, se, 0, loc)
}
