// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.24;

import {Create2} from "@openzeppelin/contracts/utils/Create2.sol";
import {SmartWallet} from "./SmartWallet.sol";

/// @title CREATE2 factory for SmartWallet
/// @notice `getAddress` is the counterfactual address a wallet has before it is deployed;
/// EIP-6492 signatures carry (factory, createAccount calldata) so verifiers can deploy it
/// in a simulation first.
contract SmartWalletFactory {
    event AccountCreated(address indexed account, address indexed owner, bytes32 salt);

    /// @notice Deploys the wallet for (owner, salt), or returns it if it already exists, so
    /// replaying an EIP-6492 factory call never reverts.
    function createAccount(address owner, bytes32 salt) external returns (address account) {
        account = getAddress(owner, salt);
        if (account.code.length > 0) return account;
        account = Create2.deploy(0, salt, _initCode(owner));
        emit AccountCreated(account, owner, salt);
    }

    function getAddress(address owner, bytes32 salt) public view returns (address) {
        return Create2.computeAddress(salt, keccak256(_initCode(owner)));
    }

    function _initCode(address owner) private pure returns (bytes memory) {
        return abi.encodePacked(type(SmartWallet).creationCode, abi.encode(owner));
    }
}
