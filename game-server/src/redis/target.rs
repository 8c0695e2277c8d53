//! `--redis` values: the forms in [`crate::redis`], parsed without
//! connecting by the shared address block
//! (`gamemesh_node::redis_address`, where the forms and their tests live),
//! and named by the flag's environment variable in errors.

use gamemesh_node::redis_address::RedisAddress;

use super::RedisConnectError;

/// Parses a `--redis` value.
pub(crate) fn parse(url: &str) -> Result<RedisAddress, RedisConnectError> {
    RedisAddress::parse(url).map_err(|e| RedisConnectError::Config(format!("REDIS_CONNECTION {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_address_names_the_variable_and_hides_the_password() {
        let e = parse("memcached://:hunter2@h:1").unwrap_err().to_string();
        assert!(
            e.starts_with("REDIS_CONNECTION memcached://:***@h:1 is not a Redis address"),
            "{e}"
        );
    }
}
