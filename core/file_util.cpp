#include "core/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace triage::core {
namespace {
Error errno_error(const std::string& what) {
    int e = errno;
    auto kind = (e == ENOSPC || e == EDQUOT || e == EMFILE || e == ENFILE || e == ENOMEM ||
                 e == EIO)
                    ? ErrorKind::Transient
                    : ErrorKind::Internal;
    return make_error(kind, what + ": " + std::strerror(e));
}
}  // namespace

Status fsync_path(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno_error("open " + path);
    int rc = ::fsync(fd);
    Status st;
    if (rc != 0) st = errno_error("fsync " + path);
    ::close(fd);
    return st;
}

Status make_dirs(const std::string& path) {
    if (path.empty()) return {};
    std::string cur;
    size_t pos = 0;
    while (pos != std::string::npos) {
        pos = path.find('/', pos + 1);
        cur = path.substr(0, pos);
        if (cur.empty()) continue;
        if (::mkdir(cur.c_str(), 0750) != 0 && errno != EEXIST) return errno_error("mkdir " + cur);
    }
    return {};
}

Status rename_file(const std::string& from, const std::string& to, bool sync_dir) {
    if (::rename(from.c_str(), to.c_str()) != 0) return errno_error("rename " + from + " -> " + to);
    if (sync_dir) {
        auto slash = to.rfind('/');
        return fsync_path(slash == std::string::npos ? "." : to.substr(0, slash));
    }
    return {};
}

Result<std::uint64_t> free_bytes(const std::string& path) {
    struct statvfs s {};
    if (::statvfs(path.c_str(), &s) != 0) return errno_error("statvfs " + path);
    return static_cast<std::uint64_t>(s.f_bavail) * s.f_frsize;
}

Result<double> used_percent(const std::string& path) {
    struct statvfs s {};
    if (::statvfs(path.c_str(), &s) != 0) return errno_error("statvfs " + path);
    if (s.f_blocks == 0) return 0.0;
    return 100.0 * static_cast<double>(s.f_blocks - s.f_bavail) / static_cast<double>(s.f_blocks);
}

}  // namespace triage::core
