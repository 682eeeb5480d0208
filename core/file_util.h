#pragma once
// Small POSIX file helpers used on the durable paths (instances, outputs).
#include <cstdint>
#include <string>

#include "core/result.h"

namespace triage::core {

/// fsync()s a file or directory by path.
Status fsync_path(const std::string& path);
/// Creates a directory and its parents (mode 0750); ok when it exists.
Status make_dirs(const std::string& path);
/// rename() with an error that names both paths; with `sync_dir` the target folder is fsync()ed.
Status rename_file(const std::string& from, const std::string& to, bool sync_dir);
/// Free bytes available to this process under `path`, or an error.
Result<std::uint64_t> free_bytes(const std::string& path);
/// Share of the file system holding `path` that is not available to us, in percent.
Result<double> used_percent(const std::string& path);

}  // namespace triage::core
