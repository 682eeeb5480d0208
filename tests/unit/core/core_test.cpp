#include <gtest/gtest.h>

#include "core/caller_rule.h"
#include "core/log.h"
#include "core/time.h"

using namespace triage::core;

TEST(Time, FormatsAndParsesIso8601) {
    auto t = parse_iso8601("2026-11-27T10:20:30.456Z");
    ASSERT_TRUE(t);
    EXPECT_EQ(format_iso8601(*t), "2026-11-27T10:20:30.456Z");
    EXPECT_EQ(format_iso8601(*parse_iso8601("2026-11-27")), "2026-11-27T00:00:00.000Z");
    EXPECT_EQ(format_iso8601(*parse_iso8601("2026-11-27T12:00:00+01:30")), "2026-11-27T10:30:00.000Z");
    EXPECT_FALSE(parse_iso8601("yesterday"));
    EXPECT_FALSE(parse_iso8601("2026-13-01"));
    EXPECT_FALSE(parse_iso8601("2026-11-27T10:00:00Zjunk"));
}

TEST(Time, FakeClockMovesOnlyWhenTold) {
    FakeClock c(*parse_iso8601("2026-01-01T00:00:00Z"));
    auto a = c.now();
    c.advance(std::chrono::seconds(31));
    EXPECT_EQ(c.now() - a, std::chrono::seconds(31));
}

TEST(CallerRule, ParsesEveryContractForm) {
    for (const char* ok : {"*", "MOD", "MOD@127.0.0.1", "MOD@10.1.0.0/16", "*@127.0.0.1", "CT1@::1",
                           "*@localhost"}) {
        EXPECT_TRUE(parse_caller_rule(ok)) << ok;
    }
    for (const char* bad : {"", "@127.0.0.1", "MOD@", "MOD@10.0.0.0/33", "MOD@300.1.1.1/8",
                            "WAY_TOO_LONG_AE_TITLE_X", "MOD@no-such-host.invalid"}) {
        EXPECT_FALSE(parse_caller_rule(bad)) << bad;
    }
}

TEST(CallerRule, MatchesAeAndAddress) {
    std::vector<CallerRule> rules;
    for (const char* r : {"CT1", "MR1@10.1.0.0/16", "*@192.168.7.7"}) rules.push_back(parse_caller_rule(r).value());
    EXPECT_TRUE(caller_allowed(rules, "CT1", "8.8.8.8"));
    EXPECT_TRUE(caller_allowed(rules, "MR1", "10.1.200.3"));
    EXPECT_FALSE(caller_allowed(rules, "MR1", "10.2.0.1"));
    EXPECT_TRUE(caller_allowed(rules, "ANY", "192.168.7.7"));
    EXPECT_TRUE(caller_allowed(rules, "ANY", "::ffff:192.168.7.7"));
    EXPECT_FALSE(caller_allowed(rules, "ANY", "192.168.7.8"));
    EXPECT_FALSE(caller_allowed({}, "CT1", "127.0.0.1"));  // empty list: nobody
    EXPECT_TRUE(caller_allowed({parse_caller_rule("*").value()}, "X", "1.2.3.4"));
}

TEST(RateLimiter, DropsBeyondBurstAndCountsThem) {
    RateLimiter r(2, std::chrono::seconds(3600));
    EXPECT_TRUE(r.allow("peer"));
    EXPECT_TRUE(r.allow("peer"));
    EXPECT_FALSE(r.allow("peer"));
    EXPECT_FALSE(r.allow("peer"));
    EXPECT_TRUE(r.allow("other"));
}

#include "core/sha256.h"

TEST(Sha256, KnownVectors) {
    EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(sha256_hex(std::string(1000, 'a')),
              "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
    EXPECT_FALSE(sha256_file("/nonexistent"));
}

#include <cstdio>

#include "core/segment_map.h"

TEST(SegmentMap, RoundTripsAndRejectsGarbage) {
    SegmentMap m{5, 4, 3, std::vector<std::uint8_t>(60, 0)};
    m.values[7] = 1;
    m.values[8] = 1;
    m.values[59] = 2;
    std::string path = "/tmp/triage-segmap-test.bin";
    ASSERT_TRUE(write_segment_map(path, m));
    auto back = read_segment_map(path);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->values, m.values);
    EXPECT_EQ(back->slices, 3);
    FILE* f = std::fopen(path.c_str(), "wb");
    std::fputs("garbage", f);
    std::fclose(f);
    EXPECT_FALSE(read_segment_map(path));
    std::remove(path.c_str());
}
