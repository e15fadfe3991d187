package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// Go-live rules: what makes a configuration fail loudly instead of
// running with a key, an address or a code nobody meant. The app's
// provisioning and start-up log and `caddy gongbao doctor` use the same
// functions, so they always agree.

// placeholderPattern finds the placeholders in a setting.
var placeholderPattern = regexp.MustCompile(`\{[^{}]+\}`)

// resolveKey resolves one key setting. Each placeholder in it must
// resolve to a non-empty value: a key whose {env.X} is not in the
// server's environment, or whose {file.…} cannot be read, is an error
// naming the setting and the placeholder (never a value), so that a
// reload fails and the running config keeps serving.
func resolveKey(repl *caddy.Replacer, setting, raw string) (string, error) {
	for _, ph := range placeholderPattern.FindAllString(raw, -1) {
		switch v := repl.ReplaceKnown(ph, ""); v {
		case "":
			return "", fmt.Errorf("gongbao: %s: placeholder %s resolved to an empty value (is the variable set in the server's environment, the file present and readable?)", setting, ph)
		case ph:
			return "", fmt.Errorf("gongbao: %s: %s is not a known placeholder (use {env.NAME} or {file.PATH})", setting, ph)
		}
	}
	key := repl.ReplaceKnown(raw, "")
	if key == "" && raw != "" {
		return "", fmt.Errorf("gongbao: %s %s resolved to an empty value", setting, describePlaceholder(raw))
	}
	return key, nil
}

// resolveKeys resolves sign_key and every verify_key (default: the sign
// key alone). A missing sign_key is left for Validate to report.
func resolveKeys(repl *caddy.Replacer, signKey string, verifyKeys []string) (sign string, verify []string, err error) {
	if sign, err = resolveKey(repl, "sign_key", signKey); err != nil {
		return "", nil, err
	}
	for i, raw := range verifyKeys {
		k, err := resolveKey(repl, verifyKeySetting(i, len(verifyKeys)), raw)
		if err != nil {
			return "", nil, err
		}
		verify = append(verify, k)
	}
	if len(verifyKeys) == 0 && sign != "" {
		verify = []string{sign}
	}
	return sign, verify, nil
}

// verifyKeySetting names the i-th verify_key in messages.
func verifyKeySetting(i, n int) string {
	if n == 1 {
		return "verify_key"
	}
	return fmt.Sprintf("verify_key #%d", i+1)
}

// keyFingerprint identifies a key in logs and command output without
// revealing it: the first 8 hex digits of its SHA-256.
func keyFingerprint(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:4])
}

func keyFingerprints(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = keyFingerprint(k)
	}
	return out
}

// insuranceCodePattern is the form of a code 工保网 assigns an insurer.
var insuranceCodePattern = regexp.MustCompile(`^[0-9]{5}$`)

// insuranceCodeProblem says what is wrong with an insurance code, or "".
func insuranceCodeProblem(code string) string {
	switch {
	case code == "":
		return "insurance_code is empty"
	case !insuranceCodePattern.MatchString(code):
		return fmt.Sprintf("insurance_code %q is not 5 digits (a placeholder such as the example's TEST?)", code)
	}
	return ""
}

// plainHTTPProblem says why a callback URL is risky, or "": plain http
// to anything but the loopback interface sends signed callbacks, with
// personal data, in clear text.
func plainHTTPProblem(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || isLoopback(u.Hostname()) {
		return ""
	}
	return fmt.Sprintf("callback URL %s is plain http to a host that is not loopback", redactURL(raw))
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// redactURL hides a password in a URL's user information.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// describeStore names a store for people: kind and file, or kind, host,
// database and schema; never a password.
func describeStore(cfg store.Config) string {
	if cfg.Driver != store.DriverPostgres {
		return "sqlite " + cfg.Path
	}
	host, db, schema := postgresWhere(cfg)
	return fmt.Sprintf("postgres host=%s db=%s schema=%s", host, db, schema)
}

// storeID names the store in one token (no password), the same on every
// instance sharing it: the metrics label of whole-store figures.
func storeID(cfg store.Config) string {
	if cfg.Driver != store.DriverPostgres {
		return "sqlite:" + cfg.Path
	}
	host, db, schema := postgresWhere(cfg)
	return "postgres://" + host + "/" + db + "/" + schema
}

// postgresWhere is where a PostgreSQL store lives: host:port, database
// and schema; never the credentials.
func postgresWhere(cfg store.Config) (host, db, schema string) {
	schema = cfg.Schema
	if schema == "" {
		schema = "public"
	}
	pc, err := pgconn.ParseConfig(cfg.DSN)
	if err != nil {
		return "(DSN does not parse)", "", schema
	}
	return net.JoinHostPort(pc.Host, strconv.Itoa(int(pc.Port))), pc.Database, schema
}

// mappingSource names where the mappings come from.
func (a *App) mappingSource() string {
	if a.Mappings == "" {
		return "built-in"
	}
	return a.Mappings
}

// callbackURLsByRoot lists "root=url" for every callback, sorted.
func (a *App) callbackURLsByRoot() []string {
	var out []string
	for event, u := range a.callbackTo {
		root := event
		if m, ok := a.mappings.Outbound[event]; ok {
			root = m.Callback
		}
		out = append(out, root+"="+redactURL(u))
	}
	slices.Sort(out)
	return out
}

// logConfiguration writes one line describing what this config serves,
// and a warning for each value that looks like a placeholder left in.
// Keys appear only as fingerprints.
func (a *App) logConfiguration(log *zap.Logger, storeCfg *store.Config) {
	sig, refusal, _ := a.Callbacks.modes()
	storeDesc := "none"
	if storeCfg != nil {
		storeDesc = describeStore(*storeCfg)
	}
	messages := make([]string, 0, len(a.mappings.Inbound))
	for root := range a.mappings.Inbound {
		messages = append(messages, root)
	}
	slices.Sort(messages)
	log.Info("gongbao configuration",
		zap.String("store", storeDesc),
		zap.String("mappings", a.mappingSource()),
		zap.Strings("messages", messages),
		zap.String("callback_base", redactURL(a.callbackBase())),
		zap.Strings("callback_urls", a.callbackURLsByRoot()),
		zap.String("reply_signature", string(sig)),
		zap.String("refusal", string(refusal)),
		zap.String("insurance_code", a.insurance),
		zap.String("sign_key_fingerprint", keyFingerprint(a.signKey)),
		zap.Strings("verify_key_fingerprints", keyFingerprints(a.verifyKeys)))
	for _, problem := range a.goLiveWarnings() {
		log.Warn("configuration value looks like a placeholder", zap.String("problem", problem))
	}
}

// goLiveWarnings are the values that would be wrong in production.
func (a *App) goLiveWarnings() []string {
	var out []string
	if len(a.mappings.Outbound) > 0 {
		if p := insuranceCodeProblem(a.insurance); p != "" {
			out = append(out, p)
		}
	}
	seen := map[string]bool{}
	for _, u := range a.callbackTo {
		if p := plainHTTPProblem(u); p != "" && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// callbackBase is the configured base with its default, resolved.
func (a *App) callbackBase() string {
	base := caddy.NewReplacer().ReplaceKnown(a.Callbacks.Base, "")
	if base == "" {
		base = defaultCallbackBase
	}
	return strings.TrimRight(base, "/")
}
