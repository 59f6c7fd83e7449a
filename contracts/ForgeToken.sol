// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title ForgeFluid platform token ($FORGE)
/// @notice Plain 18-decimal ERC-20; supply is minted by the owner (the platform treasury
/// multisig in production, the deployer on the dev chain).
contract ForgeToken is ERC20, Ownable {
    constructor(address initialOwner) ERC20("ForgeFluid", "FORGE") Ownable(initialOwner) {}

    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
