//! Admission: what a module must pass before it is compiled, and what it is granted. In
//! order: its shape (`module_shape`: sizes and counts), its signature and manifest
//! (`security::admit`: a trusted publisher, or development mode), then its grants: the
//! capabilities its manifest asks for, cut down to the operator's policy, and the resources
//! it asks for, clamped to (or refused past) the runtime's limits (`ResourcePolicy`).
//! docs/SECURITY.md describes the policy; this is the only place it is enforced.

use crate::error::{LockstepError, Result};
use crate::runtime::{ResourcePolicy, RuntimeConfig};
use crate::sandbox::Grants;
use crate::security::{self, Capabilities, SecurityError};

/// A module that passed admission.
pub(crate) struct Admitted {
    pub(crate) grants: Grants,
    /// Unsigned, admitted only because the runtime is in development mode.
    pub(crate) unsigned: bool,
}

/// Admits `bytes` under `config`'s trust, policy and limits, or says why not.
pub(crate) fn admit(bytes: &[u8], config: &RuntimeConfig) -> Result<Admitted> {
    crate::module_shape::check(bytes)?;
    let admission = security::admit(bytes, &config.trusted_keys, config.dev_mode).map_err(LockstepError::Security)?;
    let (asked, resources) = match admission.manifest {
        Some(m) => (m.capabilities, m.resources),
        // Unsigned and without a manifest: development mode grants what the policy allows.
        None => (Capabilities::all(), Default::default()),
    };
    let mut grants =
        Grants { capabilities: asked.meet(&config.policy), asked, fuel_per_call: config.fuel_per_call, memory_limit_bytes: config.memory_limit_bytes };
    for (what, want, limit, slot) in [
        ("resources.fuelPerCall", resources.fuel_per_call, config.fuel_per_call, &mut grants.fuel_per_call),
        ("resources.memoryBytes", resources.memory_bytes, config.memory_limit_bytes, &mut grants.memory_limit_bytes),
    ] {
        let Some(want) = want else { continue };
        // Fuel 0 means "metering off" for the runtime: any request fits under it.
        let over = want > limit && !(what == "resources.fuelPerCall" && limit == 0);
        if over && config.resource_policy == ResourcePolicy::Refuse {
            return Err(LockstepError::Security(SecurityError::ResourceOverLimit { what: what.into(), asked: want, limit }));
        }
        *slot = if over { limit } else { want };
    }
    Ok(Admitted { grants, unsigned: admission.publisher.is_none() })
}
