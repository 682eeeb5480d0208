// Who may use the API and the worklist page (daemon::authorize), and the token form's contents.
#include <gtest/gtest.h>

#include "daemon/api.h"
#include "daemon/web_page.h"

namespace triage::daemon {
namespace {

const std::string kToken = "the-right-token-0123456789";

HttpRequest get(const std::string& path, std::map<std::string, std::string> query = {}) {
    HttpRequest r;
    r.method = "GET";
    r.path = path;
    r.target = path;
    r.query = std::move(query);
    return r;
}

TEST(Authorize, NoTokenConfiguredAllowsEverything) {
    EXPECT_EQ(authorize("", get("/api/v1/worklist")), Access::Allowed);
    EXPECT_EQ(authorize("", get("/", {{"token", "anything"}})), Access::Allowed);
}

TEST(Authorize, BearerHeaderOrCookie) {
    HttpRequest r = get("/api/v1/studies");
    EXPECT_EQ(authorize(kToken, r), Access::Denied);
    r.authorization = "Bearer " + kToken;
    EXPECT_EQ(authorize(kToken, r), Access::Allowed);
    r.authorization = "Bearer " + kToken + "x";
    EXPECT_EQ(authorize(kToken, r), Access::Denied);
    r.authorization = kToken;  // the scheme is required
    EXPECT_EQ(authorize(kToken, r), Access::Denied);
    r.authorization.clear();
    r.cookie = "triage_token=" + kToken;
    EXPECT_EQ(authorize(kToken, r), Access::Allowed);
    r.cookie = "a=1;  triage_token=" + kToken + "; b=2";
    EXPECT_EQ(authorize(kToken, r), Access::Allowed);
    r.cookie = "triage_token=wrong; a=" + kToken;
    EXPECT_EQ(authorize(kToken, r), Access::Denied);
    r.cookie = "xtriage_token=" + kToken;
    EXPECT_EQ(authorize(kToken, r), Access::Denied);
    r.cookie = "triage_token=" + kToken.substr(1);
    EXPECT_EQ(authorize(kToken, r), Access::Denied);
}

TEST(Authorize, CookieValuesArePercentDecoded) {
    const std::string token = "a b;c%d-0123456789";
    HttpRequest r = get("/");
    r.cookie = "triage_token=a%20b%3Bc%25d-0123456789";
    EXPECT_EQ(authorize(token, r), Access::Allowed);
    r.cookie = "triage_token=a+b%3Bc%25d-0123456789";  // '+' is a plus in a cookie, not a space
    EXPECT_EQ(authorize(token, r), Access::Denied);
    EXPECT_EQ(authorize("a+b", [] { HttpRequest q = get("/"); q.cookie = "triage_token=a+b"; return q; }()), Access::Allowed);
}

TEST(PercentDecode, PlusIsASpaceOnlyInQueryStrings) {
    EXPECT_EQ(percent_decode("a+b%20c%2B", true), "a b c+");
    EXPECT_EQ(percent_decode("a+b%20c%2B", false), "a+b c+");
    EXPECT_EQ(percent_decode("100%", false), "100%");  // a malformed escape is kept
    EXPECT_EQ(percent_decode("%zz%4", false), "%zz%4");
}

TEST(Authorize, TheTokenLinkLogsInOnlyWithTheRightToken) {
    EXPECT_EQ(authorize(kToken, get("/", {{"token", kToken}})), Access::Login);
    EXPECT_EQ(authorize(kToken, get("/", {{"token", "wrong"}})), Access::Denied);
    EXPECT_EQ(authorize(kToken, get("/", {{"token", ""}})), Access::Denied);
    HttpRequest with_cookie = get("/", {{"token", "wrong"}});
    with_cookie.cookie = "triage_token=" + kToken;
    EXPECT_EQ(authorize(kToken, with_cookie), Access::Denied) << "a wrong ?token= is refused even with a cookie";
    // ?token= is a login only on the page itself, never a way to call the API.
    EXPECT_EQ(authorize(kToken, get("/api/v1/worklist", {{"token", kToken}})), Access::Denied);
}

TEST(WebPage, TheTokenFormIs401AndAsksForTheToken) {
    HttpResponse r = login_page(false);
    EXPECT_EQ(r.status, 401);
    EXPECT_NE(r.content_type.find("text/html"), std::string::npos);
    EXPECT_NE(r.body.find("name=\"token\""), std::string::npos);
    EXPECT_EQ(r.body.find("not the right one"), std::string::npos);
    EXPECT_NE(login_page(true).body.find("not the right one"), std::string::npos);
}

TEST(WebPage, ThePageAndItsAssetsAreServedFromTheBinary) {
    auto page = web_asset("/");
    ASSERT_TRUE(page);
    EXPECT_NE(page->body.find("<table id=\"worklist\">"), std::string::npos);
    EXPECT_NE(page->body.find("<section id=\"study\""), std::string::npos);
    auto js = web_asset("/ui/app.js");
    ASSERT_TRUE(js);
    EXPECT_NE(js->body.find("/api/v1/changes"), std::string::npos);
    EXPECT_TRUE(web_asset("/ui/app.css"));
    EXPECT_FALSE(web_asset("/ui/other.js"));
    EXPECT_FALSE(web_asset("/api/v1/worklist"));
}

}  // namespace
}  // namespace triage::daemon
