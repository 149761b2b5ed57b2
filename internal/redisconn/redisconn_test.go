package redisconn_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hibiken/asynq"

	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
)

func TestParse(t *testing.T) {
	ignore := cmpopts.IgnoreFields(asynq.RedisClientOpt{}, "DialTimeout", "ReadTimeout", "WriteTimeout", "TLSConfig")
	ignoreF := cmpopts.IgnoreFields(asynq.RedisFailoverClientOpt{}, "DialTimeout", "ReadTimeout", "WriteTimeout", "TLSConfig")
	ignoreC := cmpopts.IgnoreFields(asynq.RedisClusterClientOpt{}, "DialTimeout", "ReadTimeout", "WriteTimeout", "TLSConfig")
	for _, tc := range []struct {
		in   string
		want asynq.RedisConnOpt
	}{
		{"redis://127.0.0.1:6379/3", asynq.RedisClientOpt{Addr: "127.0.0.1:6379", DB: 3}},
		{"redis://localhost", asynq.RedisClientOpt{Addr: "localhost:6379"}},
		{"redis://app:pw@redis:6380/0", asynq.RedisClientOpt{Addr: "redis:6380", Username: "app", Password: "pw"}},
		{"rediss://:pw@cache.example:6380", asynq.RedisClientOpt{Addr: "cache.example:6380", Password: "pw"}},
		{"redis-socket:///run/redis.sock?db=2", asynq.RedisClientOpt{Network: "unix", Addr: "/run/redis.sock", DB: 2}},
		{"redis-sentinel://:pw@s1:26379,s2/1?master=mymaster&sentinel_password=sp",
			asynq.RedisFailoverClientOpt{MasterName: "mymaster", SentinelAddrs: []string{"s1:26379", "s2:26379"}, SentinelPassword: "sp", Password: "pw", DB: 1}},
		{"redis-cluster://n1:7000,n2:7001", asynq.RedisClusterClientOpt{Addrs: []string{"n1:7000", "n2:7001"}}},
	} {
		got, err := redisconn.Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got, ignore, ignoreF, ignoreC); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
	if o, _ := redisconn.Parse("rediss://h:1"); o.(asynq.RedisClientOpt).TLSConfig == nil {
		t.Error("rediss: got no TLS config")
	}
}

func TestParseErrorsHideSecrets(t *testing.T) {
	for _, in := range []string{
		"", "http://:hunter2@h", "redis://:hunter2@h/x", "redis-sentinel://:hunter2@h",
		"redis-cluster://:hunter2@", "redis-cluster://:hunter2@a,b/3", "::hunter2",
	} {
		_, err := redisconn.Parse(in)
		if err == nil {
			t.Errorf("Parse(%q): got nil error", in)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Parse(%q): error %q shows the password", in, err)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"redis://:hunter2@h:1/0": "redis://:xxxxx@h:1/0",
		"redis://h:1/0":          "redis://h:1/0",
		"redis-sentinel://a,b?master=m&sentinel_password=s": "redis-sentinel://a,b?master=m&sentinel_password=xxxxx",
	} {
		if got := redisconn.Redact(in); got != want {
			t.Errorf("Redact(%q): got %q, want %q", in, got, want)
		}
	}
}
