#pragma once
// The versioned schema: migrations()[i] takes the database from version i to i+1.
// Append new migrations; never edit a released one. docs/database.md describes the tables.
#include <string>
#include <vector>

namespace triage::storage {
const std::vector<std::string>& migrations();
}
