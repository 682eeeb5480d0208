#include <gtest/gtest.h>

#include <algorithm>

#include "config/config.h"

using namespace triage::config;

namespace {
bool has_problem(const LoadResult& r, const std::string& key) {
    return std::any_of(r.problems.begin(), r.problems.end(), [&](const Problem& p) { return p.key == key; });
}
}  // namespace

TEST(Config, DefaultsNeedOnlyDataDir) {
    auto r = parse_config("[node]\ndata_dir = \"/var/lib/x\"\n", "/etc/triage");
    ASSERT_TRUE(r.ok()) << r.problems[0].key << ": " << r.problems[0].message;
    const Config& c = r.config;
    EXPECT_EQ(c.node.ae_title, "TRIAGE");
    EXPECT_EQ(c.node.port, 11112);
    EXPECT_EQ(c.node.bind, "0.0.0.0");
    EXPECT_EQ(c.ingest.max_associations, 16);
    EXPECT_EQ(c.ingest.study_quiet_seconds, 30);
    EXPECT_EQ(c.ingest.durability, Durability::Os);
    EXPECT_EQ(c.ingest.min_free_mb, 1024);
    EXPECT_TRUE(c.ingest.allowed_callers.empty());
    EXPECT_EQ(c.model.bundle, "/etc/triage/models/unibiomed-mini");
    EXPECT_EQ(c.model.device, "auto");
    EXPECT_EQ(c.api.listen, "127.0.0.1:8080");
    EXPECT_TRUE(c.destinations.empty());
}

TEST(Config, ReadsTheContractExample) {
    auto r = parse_config(R"(
[node]
ae_title = "TRIAGE"
bind = "0.0.0.0"
port = 11112
data_dir = "/var/lib/triage-node"
[ingest]
allowed_callers = ["*", "CT1@10.1.0.0/16"]
max_associations = 16
study_quiet_seconds = 30
durability = "fsync"
min_free_mb = 1024
[model]
bundle = "models/unibiomed-mini"
device = "cuda:1"
[[destination]]
name = "pacs"
ae_title = "PACS"
host = "127.0.0.1"
port = 4242
send = ["seg", "sr"]
[api]
listen = ""
)", "/cfg");
    ASSERT_TRUE(r.ok()) << r.problems[0].key << ": " << r.problems[0].message;
    EXPECT_EQ(r.config.ingest.durability, Durability::Fsync);
    EXPECT_EQ(r.config.ingest.caller_rules.size(), 2u);
    ASSERT_EQ(r.config.destinations.size(), 1u);
    EXPECT_EQ(r.config.destinations[0].port, 4242);
    EXPECT_EQ(r.config.api.listen, "");
    EXPECT_EQ(r.config.node.data_dir, "/var/lib/triage-node");
}

TEST(Config, UnknownKeysAndBadValuesNameTheirKey) {
    auto r = parse_config(R"(
[node]
data_dir = "/d"
ae_titel = "X"
port = "eleven"
[ingest]
durability = "sometimes"
max_associations = 0
allowed_callers = ["MOD@10.0.0.0/40"]
[model]
device = "tpu"
[[destination]]
name = "p"
ae_title = ""
host = "h"
port = 70000
send = ["pdf"]
[extra]
x = 1
)", "/");
    EXPECT_FALSE(r.ok());
    for (const char* key : {"node.ae_titel", "node.port", "ingest.durability", "ingest.max_associations",
                            "ingest.allowed_callers", "model.device", "destination[0].ae_title",
                            "destination[0].port", "destination[0].send", "extra"}) {
        EXPECT_TRUE(has_problem(r, key)) << key;
    }
}

TEST(Config, MissingDataDirAndSyntaxErrors) {
    EXPECT_TRUE(has_problem(parse_config("[node]\nport = 1\n", "/"), "node.data_dir"));
    auto r = parse_config("[node\n", "/");
    EXPECT_TRUE(has_problem(r, "(syntax)"));
    EXPECT_TRUE(has_problem(load_config("/nonexistent/triage.toml"), "(file)"));
}

TEST(Config, SendTakesKeyImagesAndKosAndDefaultsToSegAndSr) {
    auto r = parse_config(R"(
[node]
data_dir = "/d"
[[destination]]
name = "viewer"
ae_title = "PACS"
host = "h"
port = 104
send = ["seg", "sr", "keyimages", "kos"]
[[destination]]
name = "old"
ae_title = "OLD"
host = "h"
port = 105
)", "/");
    ASSERT_TRUE(r.ok()) << r.problems[0].key << ": " << r.problems[0].message;
    EXPECT_EQ(r.config.destinations[0].send, (std::vector<std::string>{"seg", "sr", "keyimages", "kos"}));
    EXPECT_EQ(r.config.destinations[1].send, (std::vector<std::string>{"seg", "sr"}));
    EXPECT_TRUE(has_problem(parse_config("[node]\ndata_dir = \"/d\"\n[[destination]]\nname = \"p\"\nae_title = \"P\"\n"
                                         "host = \"h\"\nport = 1\nsend = [\"keyimage\"]\n", "/"),
                            "destination[0].send"));
}
