//! User management on [`Client`] (CREATE_USER, ALTER_USER, DROP_USER, LIST_USERS, GRANT,
//! REVOKE). The password is turned into its SCRAM-SHA-256 verifier here, on the client (a
//! fresh salt, 4096 iterations): it never crosses the wire. On a node that requires
//! authentication, only holders of the `users` permission may make these requests
//! (`UNAUTHORIZED` otherwise).

use crate::client::{unexpected, Client, ClientError};
use crate::message::request::Request;
use crate::message::response::Response;
use crate::message::types::{Grant, Permission, UserInfo};
use crate::scram::ScramVerifier;

impl Client {
    /// Creates user `name` with `password`; returns false when `if_not_exists` found it.
    pub async fn create_user(
        &self,
        name: &str,
        password: &str,
        superuser: bool,
        if_not_exists: bool,
    ) -> Result<bool, ClientError> {
        let verifier = ScramVerifier::generate(password);
        self.user_change(Request::CreateUser {
            name: name.to_owned(),
            superuser,
            if_not_exists,
            verifier,
        })
        .await
    }

    /// Sets the password of user `name`.
    pub async fn alter_user_password(&self, name: &str, password: &str) -> Result<(), ClientError> {
        let verifier = ScramVerifier::generate(password);
        self.user_change(Request::AlterUser {
            name: name.to_owned(),
            verifier,
        })
        .await
        .map(|_| ())
    }

    /// Drops user `name`; returns false when `if_exists` found no such user.
    pub async fn drop_user(&self, name: &str, if_exists: bool) -> Result<bool, ClientError> {
        self.user_change(Request::DropUser {
            name: name.to_owned(),
            if_exists,
        })
        .await
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<UserInfo>, ClientError> {
        match self.request(Request::ListUsers).await? {
            Response::Users(u) => Ok(u),
            other => Err(unexpected("LIST_USERS", other)),
        }
    }

    /// Grants `permission` (on `table` for a table permission) to user `name`; returns
    /// false when the user already held it.
    pub async fn grant(
        &self,
        name: &str,
        permission: Permission,
        table: Option<&str>,
    ) -> Result<bool, ClientError> {
        self.user_change(Request::Grant {
            user: name.to_owned(),
            grant: Grant {
                permission,
                table: table.map(str::to_owned),
            },
        })
        .await
    }

    /// Revokes `permission` (on `table` for a table permission) from user `name`; returns
    /// false when the user did not hold it.
    pub async fn revoke(
        &self,
        name: &str,
        permission: Permission,
        table: Option<&str>,
    ) -> Result<bool, ClientError> {
        self.user_change(Request::Revoke {
            user: name.to_owned(),
            grant: Grant {
                permission,
                table: table.map(str::to_owned),
            },
        })
        .await
    }

    async fn user_change(&self, request: Request) -> Result<bool, ClientError> {
        let opcode = request.opcode();
        match self.request(request).await? {
            Response::UserChanged { applied, .. } => Ok(applied),
            other => Err(unexpected(opcode.name(), other)),
        }
    }
}
