// Reads the client's settings from the environment over a YAML file, as `inlong send --config` does.
// snippet.show
import Configuration
import InLongDataProxy

// INLONG_MANAGER_URL, INLONG_MANAGER_AUTH, INLONG_BUFFER_WHEN_FULL, ... override the file's keys.
let config = ConfigReader(providers: [
    EnvironmentVariablesProvider().prefixKeys(with: DataProxyClient.Configuration.environmentPrefix),
    try await FileProvider<YAMLSnapshot>(filePath: "client.yaml"),
])
var configuration = try DataProxyClient.Configuration(config: config, groups: ["g"])
configuration.retry.deliveryTimeout = .seconds(30)  // code can still change anything afterwards
// snippet.end
